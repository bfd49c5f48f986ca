package controlplane_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/openbao-operator/openbao-operator/tests/localcluster/controlplane"
)

// The main goroutine keeps the main thread, so that no test goroutine runs on
// it: the Go runtime never ends the main thread, and
// TestChildrenOutliveStartingThread needs a thread that ends.
func init() { runtime.LockOSThread() }

// waitTimeout bounds every wait; it is generous because the machines running
// these tests are often busy. Nothing here asserts on durations.
const waitTimeout = 2 * time.Minute

// assetsDir returns $KUBE_ASSETS and fails the test when it does not hold the
// binaries.
func assetsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBE_ASSETS")
	if dir == "" {
		t.Fatal("KUBE_ASSETS is not set: run `make kube-assets` and set KUBE_ASSETS to its output folder (.cache/kube/<version>)")
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Fatalf("KUBE_ASSETS=%s lacks %s (run `make kube-assets`): %v", dir, b, err)
		}
	}
	return dir
}

func startControlPlane(t *testing.T, dir string) *controlplane.ControlPlane {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*waitTimeout)
	defer cancel()
	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: dir, AssetsDir: assetsDir(t)})
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	return cp
}

func TestControlPlane(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cp")
	cp := startControlPlane(t, dir)
	pids := recordedPIDs(t, dir)
	if len(pids) != 3 {
		t.Fatalf("want 3 recorded PIDs (etcd, kube-apiserver, kube-controller-manager), got %v", pids)
	}

	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("admin kubeconfig works", func(t *testing.T) {
		if _, err := os.Stat(cp.Kubeconfig()); err != nil {
			t.Fatal(err)
		}
		v, err := cs.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(v.GitVersion, "v1.") {
			t.Errorf("server version %q, want v1.x", v.GitVersion)
		}
	})

	const ns = "cp-test"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("controller manager creates the default ServiceAccount and root CA", func(t *testing.T) {
		waitFor(t, "ServiceAccount cp-test/default", func(ctx context.Context) (bool, error) {
			_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err == nil, ignoreNotFound(err)
		})
		waitFor(t, "ConfigMap cp-test/kube-root-ca.crt", func(ctx context.Context) (bool, error) {
			cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
			if err != nil {
				return false, ignoreNotFound(err)
			}
			if cm.Data["ca.crt"] != string(cp.CACertPEM()) {
				t.Fatalf("kube-root-ca.crt holds %q, want the cluster CA", cm.Data["ca.crt"])
			}
			return true, nil
		})
	})

	t.Run("StatefulSet controller creates pod-0", func(t *testing.T) {
		labels := map[string]string{"app": "web"}
		sts := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
			Spec: appsv1.StatefulSetSpec{
				Replicas:    ptr.To[int32](1),
				ServiceName: "web",
				Selector:    &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example.invalid/web:1"}}},
				},
			},
		}
		if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "pod cp-test/web-0", func(ctx context.Context) (bool, error) {
			pod, err := cs.CoreV1().Pods(ns).Get(ctx, "web-0", metav1.GetOptions{})
			if err != nil {
				return false, ignoreNotFound(err)
			}
			if pod.Status.Phase != corev1.PodPending {
				t.Fatalf("pod web-0 phase %q, want Pending (no node runs it)", pod.Status.Phase)
			}
			return true, nil
		})
	})

	t.Run("TokenRequest tokens verify against the issuer's JWKS", func(t *testing.T) {
		const audience = "openbao-test"
		var tr *authenticationv1.TokenRequest
		// The token controller may not have seen the ServiceAccount yet;
		// retry until the request is accepted.
		waitFor(t, "TokenRequest for cp-test/default", func(ctx context.Context) (bool, error) {
			var err error
			tr, err = cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default", &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](600)},
			}, metav1.CreateOptions{})
			return err == nil, ignoreNotFound(err)
		})

		var discovery struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		getJSON(t, cs, "/.well-known/openid-configuration", &discovery)
		if discovery.Issuer != cp.ServiceAccountIssuer() {
			t.Errorf("discovery issuer %q, want %q", discovery.Issuer, cp.ServiceAccountIssuer())
		}
		if !strings.HasSuffix(discovery.JWKSURI, "/openid/v1/jwks") {
			t.Errorf("jwks_uri %q does not end in /openid/v1/jwks", discovery.JWKSURI)
		}
		var jwks struct {
			Keys []jwk `json:"keys"`
		}
		getJSON(t, cs, "/openid/v1/jwks", &jwks)

		header, claims, signed, sig := splitJWT(t, tr.Status.Token)
		var hdr struct {
			Alg string `json:"alg"`
			Kid string `json:"kid"`
		}
		decodeSegment(t, header, &hdr)
		var cl struct {
			Iss string   `json:"iss"`
			Aud []string `json:"aud"`
			Sub string   `json:"sub"`
		}
		decodeSegment(t, claims, &cl)
		if cl.Iss != cp.ServiceAccountIssuer() || !slices.Contains(cl.Aud, audience) || cl.Sub != "system:serviceaccount:cp-test:default" {
			t.Errorf("token claims iss=%q aud=%v sub=%q; want issuer %q, audience %q, the default ServiceAccount", cl.Iss, cl.Aud, cl.Sub, cp.ServiceAccountIssuer(), audience)
		}
		if hdr.Alg != "RS256" {
			t.Fatalf("token alg %q, want RS256", hdr.Alg)
		}
		idx := slices.IndexFunc(jwks.Keys, func(k jwk) bool { return k.Kid == hdr.Kid })
		if idx < 0 {
			t.Fatalf("JWKS %+v has no key %q", jwks.Keys, hdr.Kid)
		}
		key := jwks.Keys[idx]
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(b64(t, key.N)), E: int(new(big.Int).SetBytes(b64(t, key.E)).Int64())}
		digest := sha256.Sum256([]byte(signed))
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], b64(t, sig)); err != nil {
			t.Fatalf("token signature does not verify against JWKS key %q: %v", key.Kid, err)
		}
	})

	if err := cp.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	assertGone(t, pids)
	if left := recordedPIDs(t, dir); len(left) != 0 {
		t.Errorf("PID files left after Stop: %v", left)
	}
}

// TestCleanupKillsLeftovers plays a crashed owner: the processes are never
// stopped, and Cleanup must find them through the recorded PIDs.
func TestCleanupKillsLeftovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cp")
	cp := startControlPlane(t, dir)
	pids := recordedPIDs(t, dir)
	if len(pids) != 3 {
		t.Fatalf("want 3 recorded PIDs, got %v", pids)
	}
	if _, err := controlplane.Start(t.Context(), controlplane.Options{Dir: dir, AssetsDir: assetsDir(t)}); err == nil {
		t.Fatal("a second Start on a running state folder succeeded; want an error")
	}
	if err := controlplane.Cleanup(dir); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	assertGone(t, pids)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state folder still there after Cleanup (stat: %v)", err)
	}
	// Stop must still succeed on processes that are already gone.
	if err := cp.Stop(); err != nil {
		t.Errorf("stop after cleanup: %v", err)
	}
}

// jwk is the part of a JSON Web Key that verifies an RS256 signature.
type jwk struct {
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

func waitFor(t *testing.T, what string, cond wait.ConditionWithContextFunc) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, waitTimeout, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func getJSON(t *testing.T, cs kubernetes.Interface, path string, into any) {
	t.Helper()
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath(path).DoRaw(t.Context())
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if err := json.Unmarshal(raw, into); err != nil {
		t.Fatalf("GET %s: decode %s: %v", path, raw, err)
	}
}

func splitJWT(t *testing.T, token string) (header, claims, signed, sig string) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	return parts[0], parts[1], parts[0] + "." + parts[1], parts[2]
}

func decodeSegment(t *testing.T, seg string, into any) {
	t.Helper()
	if err := json.Unmarshal(b64(t, seg), into); err != nil {
		t.Fatalf("decode JWT segment: %v", err)
	}
}

func b64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64url %q: %v", s, err)
	}
	return b
}

// recordedPIDs reads the PID files Start wrote.
func recordedPIDs(t *testing.T, dir string) []int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "pids", "*.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			t.Fatalf("PID file %s: %v", f, err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// assertGone fails for every PID that still names a live process. The test
// process is the parent of the control plane, so a stopped child that has not
// been reaped yet shows as a zombie; that counts as gone.
func assertGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
			stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
			if err != nil {
				return true, nil
			}
			i := strings.LastIndexByte(string(stat), ')')
			return i > 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X'), nil
		})
		if err != nil {
			t.Errorf("PID %d still running: %v", pid, err)
		}
	}
}

// TestChildrenOutliveStartingThread starts the control plane from a goroutine
// locked to its OS thread that then returns, which ends the thread (as code
// that enters network namespaces does). The kernel's parent-death signal
// follows the thread, so the components must not have been started from it.
func TestChildrenOutliveStartingThread(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cp")
	assets := assetsDir(t)
	var (
		cp  *controlplane.ControlPlane
		err error
		tid int
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		tid = syscall.Gettid()
		cp, err = controlplane.Start(t.Context(), controlplane.Options{Dir: dir, AssetsDir: assets})
	}()
	<-done
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	waitFor(t, "the starting thread to end", func(context.Context) (bool, error) {
		_, err := os.Stat(filepath.Join("/proc/self/task", strconv.Itoa(tid)))
		return errors.Is(err, os.ErrNotExist), nil
	})
	cs, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{}); err != nil {
		t.Errorf("API server unreachable after the starting thread ended: %v", err)
	}
	if err := cp.Check(); err != nil {
		t.Errorf("components died with the thread that started them: %v", err)
	}
}
