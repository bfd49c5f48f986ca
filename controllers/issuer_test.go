package controllers

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestJWKSToPEMRoundTripsRSAAndEC(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecPub, err := ecKey.PublicKey.Bytes() // uncompressed point 0x04 || X || Y
	require.NoError(t, err)
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "crv": "P-256", "x": b64(ecPub[1:33]), "y": b64(ecPub[33:])},
		{"kty": "oct", "k": "c2VjcmV0"},
	}})
	pems, err := JWKSToPEM(jwks)
	require.NoError(t, err)
	require.Len(t, pems, 2, "symmetric keys are ignored")

	var gotRSA, gotEC bool
	for _, p := range pems {
		block, _ := pem.Decode([]byte(p))
		require.NotNil(t, block)
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		require.NoError(t, err)
		switch k := pub.(type) {
		case *rsa.PublicKey:
			gotRSA = k.Equal(&rsaKey.PublicKey)
		case *ecdsa.PublicKey:
			gotEC = k.Equal(&ecKey.PublicKey)
		}
	}
	assert.True(t, gotRSA, "RSA key survives the conversion")
	assert.True(t, gotEC, "EC key survives the conversion")

	_, err = JWKSToPEM([]byte(`{"keys":[]}`))
	assert.ErrorContains(t, err, "no RSA or EC key")
	_, err = JWKSToPEM([]byte(`not json`))
	assert.Error(t, err)
}

func TestPhaseIsDerivedFromConditions(t *testing.T) {
	cond := func(t string, s bool) metav1.Condition {
		return metav1.Condition{Type: t, Status: conditionStatus(s), Reason: "R"}
	}
	tests := []struct {
		name     string
		conds    []metav1.Condition
		replicas int32
		want     openbaov1alpha1.ClusterPhase
	}{
		{"nothing yet", nil, 0, openbaov1alpha1.PhasePending},
		{"pods forming", []metav1.Condition{cond("Available", false)}, 2, openbaov1alpha1.PhaseInitializing},
		{"available", []metav1.Condition{cond("Available", true)}, 3, openbaov1alpha1.PhaseRunning},
		{"upgrading wins over available", []metav1.Condition{cond("Available", true), cond("Upgrading", true)}, 3, openbaov1alpha1.PhaseUpgrading},
		{"degraded wins over upgrading", []metav1.Condition{cond("Upgrading", true), cond("Degraded", true)}, 3, openbaov1alpha1.PhaseDegraded},
		{"paused wins over everything", []metav1.Condition{cond("Degraded", true), cond("Paused", true)}, 3, openbaov1alpha1.PhasePaused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &openbaov1alpha1.OpenBaoCluster{}
			for _, cd := range tc.conds {
				meta.SetStatusCondition(&c.Status.Conditions, cd)
			}
			c.Status.Replicas = tc.replicas
			assert.Equal(t, tc.want, phaseOf(c))
		})
	}
}
