package openbao

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openbao-operator/openbao-operator/pkg/pki"
)

// TestClientsOfOneServerShareConnections: clients created one after another for the same
// server (as every pass and every leader-watch round does) reuse one TLS connection instead
// of each opening its own and leaving it idle; a client of another server name gets a
// transport of its own.
func TestClientsOfOneServerShareConnections(t *testing.T) {
	ca, err := pki.NewCA("test CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	const name = "bao-0.bao-internal.ns.svc"
	cert, err := pki.IssueServerCert(ca, pki.ServerCertRequest{CommonName: name, DNSNames: []string{name}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, Validity: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"initialized":true,"sealed":false,"standby":false,"version":"2.7.2"}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	before := transports.size()
	for i := range 20 {
		cl, err := New(Config{Address: srv.URL, CACertPEM: ca.CertPEM, TLSServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Health(t.Context()); err != nil {
			t.Fatalf("health through client %d: %v", i, err)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Fatalf("20 clients of one server opened %d connections, want 1", got)
	}
	if got := transports.size() - before; got != 1 {
		t.Fatalf("20 clients of one server made %d shared transports, want 1", got)
	}
	other, err := New(Config{Address: srv.URL, CACertPEM: ca.CertPEM, TLSServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Health(t.Context()); err != nil {
		t.Fatalf("health with another server name: %v", err)
	}
	if got := conns.Load(); got != 2 {
		t.Fatalf("a client with another server name opened no connection of its own (%d in all)", got)
	}
}
