package loadclient

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

// The application that the end-to-end tests and the benchmark run against their clusters:
// the service account AppServiceAccount of the cluster's namespace logs in with a token
// for AppAudience to the JWT role AppRole.
const (
	AppRole           = "app"
	AppAudience       = "openbao"
	AppServiceAccount = "app"
)

// AppClusterOptions describe an OpenBaoCluster made for the application.
type AppClusterOptions struct {
	Namespace, Name, Version string
	Replicas                 int32
	// Scope is the folder under secret/ that the application may create, read and update
	// ("e2e" grants secret/data/e2e/*).
	Scope string
	// TokenTTL of the application's OpenBao tokens, e.g. "10m".
	TokenTTL string
	// ExtraPolicy is appended to the application's policy.
	ExtraPolicy string
}

// AppCluster is an OpenBaoCluster whose self-initialization enables a kv-v2 engine at
// secret/ and the application's JWT role.
func AppCluster(o AppClusterOptions) *openbaov1alpha1.OpenBaoCluster {
	raw := func(v any) *runtime.RawExtension {
		data, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		return &runtime.RawExtension{Raw: data}
	}
	policy := fmt.Sprintf("path \"secret/data/%s/*\" {\n  capabilities = [\"create\", \"read\", \"update\"]\n}\n", o.Scope) + o.ExtraPolicy
	return &openbaov1alpha1.OpenBaoCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
		Spec: openbaov1alpha1.OpenBaoClusterSpec{
			Version:  o.Version,
			Replicas: ptr.To(o.Replicas),
			SelfInit: []openbaov1alpha1.SelfInitRequest{
				{Name: "enable-secret-kv", Path: "sys/mounts/secret", Data: raw(map[string]any{"type": "kv", "options": map[string]any{"version": "2"}})},
				{Name: "app-policy", Path: "sys/policies/acl/" + AppRole, Data: raw(map[string]any{"policy": policy})},
				{Name: "app-role", Path: "auth/jwt/role/" + AppRole, Data: raw(map[string]any{
					"role_type":       "jwt",
					"bound_audiences": []string{AppAudience},
					"bound_subject":   "system:serviceaccount:" + o.Namespace + ":" + AppServiceAccount,
					"user_claim":      "sub",
					"token_policies":  []string{AppRole},
					"token_ttl":       o.TokenTTL,
				})},
			},
		},
	}
}
