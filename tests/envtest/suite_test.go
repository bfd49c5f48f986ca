// Package envtest tests the OpenBaoCluster API and the provisioning controller against a
// real kube-apiserver and etcd (built by `make kube-assets`).
package envtest

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/controllers"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade/bluegreen"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade/rolling"
)

var (
	restConfig *rest.Config
	scheme     = runtime.NewScheme()
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		println("KUBEBUILDER_ASSETS is not set: run the tests through `make test-envtest`, which builds kube-apiserver and etcd with `make kube-assets`")
		return 1
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			println(bin + " is missing from KUBEBUILDER_ASSETS=" + assets + ": run `make kube-assets`")
			return 1
		}
	}
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := openbaov1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		println("start envtest: " + err.Error())
		return 1
	}
	restConfig = cfg
	code := m.Run()
	if err := env.Stop(); err != nil {
		println("stop envtest: " + err.Error())
	}
	return code
}

// writeCounter counts the writes a client makes.
type writeCounter struct{ n atomic.Int64 }

func (w *writeCounter) funcs() interceptor.Funcs {
	return interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			w.n.Add(1)
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			w.n.Add(1)
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			w.n.Add(1)
			return c.Patch(ctx, obj, patch, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			w.n.Add(1)
			return c.Delete(ctx, obj, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			w.n.Add(1)
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			w.n.Add(1)
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	}
}

// harness drives the reconciler directly, one Reconcile call at a time, so every test
// sees exactly what each pass does.
type harness struct {
	t          *testing.T
	client     client.Client
	writes     *writeCounter
	reconciler *controllers.OpenBaoClusterReconciler
	namespace  string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	direct, err := client.NewWithWatch(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	writes := &writeCounter{}
	counted := interceptor.NewClient(direct, writes.funcs())
	kube := kubernetes.NewForConfigOrDie(restConfig)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "envtest-"}}
	if err := direct.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = direct.Delete(context.Background(), ns) })
	return &harness{
		t:      t,
		client: direct,
		writes: writes,
		reconciler: &controllers.OpenBaoClusterReconciler{
			Client: counted,
			Scheme: scheme,
			Clock:  clock.RealClock{},
			Issuer: &controllers.APIServerIssuerSource{Client: kube.Discovery().RESTClient(), Clock: clock.RealClock{}},
			Upgrades: &upgrade.Manager{Strategies: upgrade.Strategies{
				openbaov1alpha1.RollingUpgrade:   rolling.Strategy{},
				openbaov1alpha1.BlueGreenUpgrade: bluegreen.Strategy{},
			}},
			Options: controllers.Options{
				OperatorNamespace:      "openbao-operator-system",
				OperatorServiceAccount: "openbao-operator-controller-manager",
				// The tests change Secrets behind the operator's back and look at the very
				// next pass; the memo's few seconds of delay are TestSecretMemo's.
				SecretMemoTTL: -1,
			},
		},
		namespace: ns.Name,
	}
}

// reconcile runs one pass for the cluster and returns its result.
func (h *harness) reconcile(name string) (ctrl.Result, error) {
	h.t.Helper()
	return h.reconciler.Reconcile(h.t.Context(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: h.namespace, Name: name}})
}

func (h *harness) get(name string, obj client.Object) error {
	return h.client.Get(h.t.Context(), types.NamespacedName{Namespace: h.namespace, Name: name}, obj)
}

// requireDegraded fails the test unless the cluster is Degraded=True for reason, with a
// message that holds part.
func (h *harness) requireDegraded(name, reason, part string) {
	h.t.Helper()
	cond := meta.FindStatusCondition(h.cluster(name).Status.Conditions, openbaov1alpha1.ConditionDegraded)
	require.NotNil(h.t, cond, "cluster %s has no Degraded condition", name)
	assert.Equal(h.t, metav1.ConditionTrue, cond.Status)
	assert.Equal(h.t, reason, cond.Reason)
	assert.Contains(h.t, cond.Message, part)
}

func (h *harness) cluster(name string) *openbaov1alpha1.OpenBaoCluster {
	h.t.Helper()
	c := &openbaov1alpha1.OpenBaoCluster{}
	if err := h.get(name, c); err != nil {
		h.t.Fatalf("get cluster %s: %v", name, err)
	}
	return c
}
