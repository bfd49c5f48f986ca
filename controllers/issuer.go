package controllers

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
)

// ServiceAccountIssuer is the Kubernetes service-account token issuer as OpenBao's JWT auth
// needs it: the issuer URL and the PEM public keys that verify tokens.
type ServiceAccountIssuer struct {
	Issuer  string
	KeysPEM []string
}

// IssuerSource returns the cluster's service-account issuer.
type IssuerSource interface {
	Issuer(ctx context.Context) (ServiceAccountIssuer, error)
}

// APIServerIssuerSource reads the issuer from the API server's OIDC discovery endpoints with
// the operator's own credentials (RBAC on the two non-resource URLs). OpenBao gets the keys
// in its configuration instead of fetching them itself, so the discovery endpoints need not be
// opened to anonymous callers.
type APIServerIssuerSource struct {
	Client rest.Interface
	Clock  clock.PassiveClock

	mu      sync.Mutex
	cached  ServiceAccountIssuer
	fetched time.Time
}

// Reading the two OIDC discovery URLs is the operator's only cluster-wide permission. It is
// granted by config/rbac/oidc_discovery_role.yaml, a ClusterRole of its own, rather than by
// a +kubebuilder:rbac marker: the markers make the namespaced role that OLM scopes to the
// watched namespaces, where non-resource URLs cannot be granted.

// Issuer returns the issuer, cached for issuerCacheTTL.
func (s *APIServerIssuerSource) Issuer(ctx context.Context) (ServiceAccountIssuer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Clock.Now()
	if s.cached.Issuer != "" && now.Sub(s.fetched) < issuerCacheTTL {
		return s.cached, nil
	}
	var discovery struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	raw, err := s.Client.Get().AbsPath("/.well-known/openid-configuration").DoRaw(ctx)
	if err != nil {
		return ServiceAccountIssuer{}, fmt.Errorf("read the service-account issuer discovery document: %w", err)
	}
	if err := json.Unmarshal(raw, &discovery); err != nil || discovery.Issuer == "" {
		return ServiceAccountIssuer{}, fmt.Errorf("the service-account issuer discovery document has no issuer (%v)", err)
	}
	raw, err = s.Client.Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
	if err != nil {
		return ServiceAccountIssuer{}, fmt.Errorf("read the service-account issuer keys: %w", err)
	}
	keys, err := JWKSToPEM(raw)
	if err != nil {
		return ServiceAccountIssuer{}, err
	}
	s.cached = ServiceAccountIssuer{Issuer: discovery.Issuer, KeysPEM: keys}
	s.fetched = now
	return s.cached, nil
}

// JWKSToPEM converts the RSA and EC keys of a JSON Web Key Set to sorted PEM public keys.
func JWKSToPEM(jwks []byte) ([]string, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Crv string `json:"crv"`
			N   string `json:"n"`
			E   string `json:"e"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, fmt.Errorf("parse the service-account issuer keys: %w", err)
	}
	var out []string
	for _, k := range set.Keys {
		var pub any
		switch k.Kty {
		case "RSA":
			n, err1 := base64.RawURLEncoding.DecodeString(k.N)
			e, err2 := base64.RawURLEncoding.DecodeString(k.E)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("decode RSA key: %w", err)
			}
			pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		case "EC":
			var curve elliptic.Curve
			switch k.Crv {
			case "P-256":
				curve = elliptic.P256()
			case "P-384":
				curve = elliptic.P384()
			case "P-521":
				curve = elliptic.P521()
			default:
				continue
			}
			x, err1 := base64.RawURLEncoding.DecodeString(k.X)
			y, err2 := base64.RawURLEncoding.DecodeString(k.Y)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("decode EC key: %w", err)
			}
			pub = &ecdsa.PublicKey{Curve: curve, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		default:
			continue
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("encode issuer key: %w", err)
		}
		out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	}
	if len(out) == 0 {
		return nil, errors.New("the service-account issuer publishes no RSA or EC key")
	}
	sort.Strings(out)
	return out, nil
}
