package pki

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServerCertVerifiesForEveryName(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := NewCA("bao-ca", now, 365*24*time.Hour)
	require.NoError(t, err)
	names := []string{"bao", "bao.ns.svc", "bao-0.bao-internal.ns.svc"}
	srv, err := IssueServerCert(ca, ServerCertRequest{CommonName: "bao", DNSNames: names, Validity: 90 * 24 * time.Hour}, now)
	require.NoError(t, err)

	_, err = tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	require.NoError(t, err, "certificate and key must match")

	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca.CertPEM))
	cert, err := ParseCertificate(srv.CertPEM)
	require.NoError(t, err)
	for _, n := range names {
		_, err := cert.Verify(x509.VerifyOptions{DNSName: n, Roots: pool, CurrentTime: now.Add(time.Hour)})
		assert.NoError(t, err, n)
	}
	_, err = cert.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: pool, CurrentTime: now})
	assert.Error(t, err)
	assert.Empty(t, NeedsRenewal(srv.CertPEM, ca.CertPEM, names, now, 30*24*time.Hour))
}

func TestServerCertNeverOutlivesCA(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("ca", now, 24*time.Hour)
	require.NoError(t, err)
	srv, err := IssueServerCert(ca, ServerCertRequest{CommonName: "s", DNSNames: []string{"s"}, Validity: 365 * 24 * time.Hour}, now)
	require.NoError(t, err)
	caCert, _ := ParseCertificate(ca.CertPEM)
	cert, _ := ParseCertificate(srv.CertPEM)
	assert.False(t, cert.NotAfter.After(caCert.NotAfter))
}

func TestNeedsRenewal(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, _ := NewCA("ca", now, 365*24*time.Hour)
	otherCA, _ := NewCA("other", now, 365*24*time.Hour)
	srv, _ := IssueServerCert(ca, ServerCertRequest{CommonName: "s", DNSNames: []string{"a", "b"}, Validity: 60 * 24 * time.Hour}, now)

	tests := []struct {
		name  string
		cert  []byte
		ca    []byte
		names []string
		at    time.Time
		want  string
	}{
		{"fine", srv.CertPEM, ca.CertPEM, []string{"a"}, now, ""},
		{"garbage", []byte("nope"), ca.CertPEM, nil, now, "certificate does not parse"},
		{"other CA", srv.CertPEM, otherCA.CertPEM, nil, now, "does not verify"},
		{"missing name", srv.CertPEM, ca.CertPEM, []string{"a", "c"}, now, "not valid for c"},
		{"expiring", srv.CertPEM, ca.CertPEM, nil, now.Add(40 * 24 * time.Hour), "expires at"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := NeedsRenewal(tc.cert, tc.ca, tc.names, tc.at, 30*24*time.Hour)
			if tc.want == "" {
				assert.Empty(t, got)
			} else {
				assert.Contains(t, got, tc.want)
			}
		})
	}
}
