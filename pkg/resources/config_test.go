package resources_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl"

	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const testPubKey = `-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo
4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u
-----END PUBLIC KEY-----
`

func goldenParams() resources.ConfigParams {
	return resources.ConfigParams{
		ClusterName:           "vault-a",
		Namespace:             "secrets",
		Replicas:              3,
		HeadlessService:       "vault-a-internal",
		TLSCertFile:           "/openbao/tls/tls.crt",
		TLSKeyFile:            "/openbao/tls/tls.key",
		TLSCAFile:             "/openbao/tls/ca.crt",
		DataDir:               "/openbao/data",
		PerformanceMultiplier: 1,
		SealKeyFile:           "/openbao/seal/key",
		SealKeyID:             "operator-1",
		JWT: resources.JWTInit{
			Issuer:               "https://kubernetes.default.svc.cluster.local",
			ValidationPubKeysPEM: []string{testPubKey},
			UpgradeAudience:      "openbao-upgrade",
			OperatorSubject:      "system:serviceaccount:openbao-operator-system:openbao-operator-controller-manager",
			OperatorAudience:     "openbao-operator",
		},
		SelfInit: []resources.InitRequest{
			{Name: "enable-kv", Path: "sys/mounts/secret", Data: map[string]any{"type": "kv", "options": map[string]any{"version": "2"}}},
			{Name: "admin-policy", Path: "sys/policies/acl/admin", Data: map[string]any{"policy": "path \"*\" {\n  capabilities = [\"sudo\", \"read\"]\n}\n"}},
		},
	}
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run `go test ./pkg/resources -run Golden -update` to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the rendered text (rerun with -update if the change is intended):\n--- got\n%s", path, got)
	}
}

func TestRenderConfigGolden(t *testing.T) {
	got, err := resources.RenderConfig(goldenParams())
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "config-main.hcl", got)
}

func TestRenderConfigNonVoterJoinsGivenTargetsGolden(t *testing.T) {
	p := goldenParams()
	p.StatefulSet = "vault-a-green"
	p.NonVoter = true
	p.JoinTargets = []resources.JoinTarget{
		{APIAddr: "https://vault-a-0.vault-a-internal.secrets.svc:8200"},
		{APIAddr: "https://vault-a-1.vault-a-internal.secrets.svc:8200"},
	}
	got, err := resources.RenderConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "config-bluegreen.hcl", got)
}

func TestRenderSelfInitConfigGolden(t *testing.T) {
	got, err := resources.RenderSelfInitConfig(goldenParams())
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "config-self-init.hcl", got)
}

// flatten merges HCL 1's lists of single-key maps into maps, as OpenBao does when it reads
// blocks and objects.
func flatten(v any) any {
	switch x := v.(type) {
	case []map[string]any:
		out := map[string]any{}
		for _, m := range x {
			for k, val := range m {
				if prev, ok := out[k].(map[string]any); ok {
					if next, ok := flatten(val).(map[string]any); ok {
						for kk, vv := range next {
							prev[kk] = vv
						}
						continue
					}
				}
				out[k] = flatten(val)
			}
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, val := range x {
			out[k] = flatten(val)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = flatten(val)
		}
		return out
	default:
		return v
	}
}

func normalize(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func dig(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("at %q: not a map but %T", k, v)
		}
		v, ok = m[k]
		if !ok {
			t.Fatalf("key %q missing; have %v", k, reflect.ValueOf(m).MapKeys())
		}
	}
	return v
}

// TestSelfInitDataRoundTripsThroughHCL parses the rendered text with the HCL parser that
// OpenBao uses and checks that every value comes back as given, including strings that HCL
// would otherwise read as interpolations, quotes, backslashes and newlines.
func TestSelfInitDataRoundTripsThroughHCL(t *testing.T) {
	tricky := map[string]any{
		"interpolation": "a ${b} c %{d} $${e}",
		"quotes":        `say "hi" \ and \n literally`,
		"multiline":     "line one\nline \"two\"\n  ${three}\n",
		"heredoc_like":  "first\nEOT\nlast\n",
		"unicode":       "grüße ✓ \t tab",
		"empty":         "",
		"number":        42,
		"float":         1.5,
		"bool":          true,
		"list":          []any{"x", "y\nz", 3, false},
		"nested":        map[string]any{"deeper": map[string]any{"k": "v"}, "weird key": "ok"},
	}
	p := goldenParams()
	p.SelfInit = []resources.InitRequest{{Name: "tricky", Path: "secret/data/tricky", Operation: "create", Data: tricky}}
	text, err := resources.RenderSelfInitConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := hcl.Decode(&raw, text); err != nil {
		t.Fatalf("HCL does not parse the rendered text: %v\n%s", err, text)
	}
	doc := flatten(raw)
	req := dig(t, doc, "initialize", "user", "request", "tricky")
	if got := dig(t, req, "operation"); got != "create" {
		t.Errorf("operation = %v", got)
	}
	if got, want := normalize(t, dig(t, req, "data")), normalize(t, tricky); !reflect.DeepEqual(got, want) {
		t.Errorf("data after HCL round trip:\n got %#v\nwant %#v", got, want)
	}
	keys := dig(t, doc, "initialize", "operator_jwt_auth", "request", "configure_jwt", "data", "jwt_validation_pubkeys")
	if got := normalize(t, keys); !reflect.DeepEqual(got, []any{testPubKey}) {
		t.Errorf("jwt_validation_pubkeys = %#v", got)
	}
	policy := dig(t, doc, "initialize", "operator_upgrade_role", "request", "upgrade_policy", "data", "policy")
	if policy != resources.UpgradePolicy {
		t.Errorf("upgrade policy after round trip:\n%v", policy)
	}

	main, err := resources.RenderConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	var mainRaw map[string]any
	if err := hcl.Decode(&mainRaw, main); err != nil {
		t.Fatalf("HCL does not parse the main config: %v", err)
	}
	joins := dig(t, flatten(mainRaw), "storage", "raft")
	if _, ok := joins.(map[string]any)["retry_join"]; !ok {
		t.Errorf("no retry_join in %v", joins)
	}
}

func TestRenderConfigRejectsIncompleteParams(t *testing.T) {
	cases := map[string]func(p *resources.ConfigParams){
		"no seal key":          func(p *resources.ConfigParams) { p.SealKeyFile = "" },
		"no replicas or peers": func(p *resources.ConfigParams) { p.Replicas = 0 },
		"plain http peer":      func(p *resources.ConfigParams) { p.JoinTargets = []resources.JoinTarget{{APIAddr: "http://x:8200"}} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			p := goldenParams()
			mutate(&p)
			if _, err := resources.RenderConfig(p); err == nil {
				t.Fatal("rendered without error")
			}
		})
	}
	selfInitCases := map[string]func(p *resources.ConfigParams){
		"no pubkeys":        func(p *resources.ConfigParams) { p.JWT.ValidationPubKeysPEM = nil },
		"pubkey not PEM":    func(p *resources.ConfigParams) { p.JWT.ValidationPubKeysPEM = []string{"abc"} },
		"no issuer":         func(p *resources.ConfigParams) { p.JWT.Issuer = "" },
		"operator subject":  func(p *resources.ConfigParams) { p.JWT.OperatorSubject = "operator" },
		"bad request name":  func(p *resources.ConfigParams) { p.SelfInit[0].Name = "1 bad" },
		"duplicate request": func(p *resources.ConfigParams) { p.SelfInit[1].Name = p.SelfInit[0].Name },
		"absolute path":     func(p *resources.ConfigParams) { p.SelfInit[0].Path = "/v1/sys/mounts/x" },
		"unknown operation": func(p *resources.ConfigParams) { p.SelfInit[0].Operation = "post" },
		"null in data":      func(p *resources.ConfigParams) { p.SelfInit[0].Data = map[string]any{"x": nil} },
		"unsupported type":  func(p *resources.ConfigParams) { p.SelfInit[0].Data = map[string]any{"x": struct{}{}} },
	}
	for name, mutate := range selfInitCases {
		t.Run(name, func(t *testing.T) {
			p := goldenParams()
			mutate(&p)
			if _, err := resources.RenderSelfInitConfig(p); err == nil {
				t.Fatal("rendered without error")
			}
		})
	}
}

func TestServerCommandLoadsSelfInitOnlyOnFirstPodWithEmptyData(t *testing.T) {
	cmd := resources.ServerCommand("/openbao/config", "/openbao/data")
	if len(cmd) != 3 || cmd[0] != "/bin/sh" {
		t.Fatalf("command = %q", cmd)
	}
	for _, want := range []string{
		`"${POD_NAME##*-}" = "0"`,
		`-s '/openbao/config/self-init.hcl'`,
		`! -e '/openbao/data/vault.db'`,
		`exec bao server "$@"`,
	} {
		if !strings.Contains(cmd[2], want) {
			t.Errorf("script lacks %q:\n%s", want, cmd[2])
		}
	}
}

func TestDefaultJoinTargetsArePodDNSNames(t *testing.T) {
	got := resources.DefaultJoinTargets(goldenParams())
	want := []resources.JoinTarget{
		{APIAddr: "https://vault-a-0.vault-a-internal.secrets.svc:8200", TLSServerName: "vault-a-0.vault-a-internal.secrets.svc"},
		{APIAddr: "https://vault-a-1.vault-a-internal.secrets.svc:8200", TLSServerName: "vault-a-1.vault-a-internal.secrets.svc"},
		{APIAddr: "https://vault-a-2.vault-a-internal.secrets.svc:8200", TLSServerName: "vault-a-2.vault-a-internal.secrets.svc"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v", got)
	}
}
