package envtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/controllers"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

func createNamespace(t *testing.T, c client.Client, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	require.NoError(t, c.Create(t.Context(), ns))
	t.Cleanup(func() { _ = c.Delete(context.Background(), ns) })
	return ns.Name
}

// TestManagerWatchesOnlyTargetNamespaces runs the manager as OLM's OwnNamespace,
// SingleNamespace and MultiNamespace install modes configure it (WATCH_NAMESPACE from the
// olm.targetNamespaces annotation): clusters in the watched namespaces are provisioned, a
// cluster elsewhere gets nothing at all, not even a status or a finalizer.
func TestManagerWatchesOnlyTargetNamespaces(t *testing.T) {
	direct, err := client.New(restConfig, client.Options{Scheme: scheme})
	require.NoError(t, err)
	// The ignored cluster exists first: had the manager seen it, it would have acted on it
	// before it provisioned the watched ones.
	other := createNamespace(t, direct, "unwatched-")
	require.NoError(t, direct.Create(t.Context(), newCluster(other, "bao")))
	watched := []string{createNamespace(t, direct, "watched-a-"), createNamespace(t, direct, "watched-b-")}

	namespaces := controllers.WatchedNamespaces(" " + watched[0] + ", " + watched[1] + ",")
	require.Equal(t, watched, namespaces, "OLM's comma-separated olm.targetNamespaces")
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(namespaces),
		Client:                 controllers.ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	require.NoError(t, err)
	kube := kubernetes.NewForConfigOrDie(restConfig)
	reconciler := &controllers.OpenBaoClusterReconciler{
		Client:   mgr.GetClient(),
		Scheme:   scheme,
		Recorder: mgr.GetEventRecorder("openbao-operator"),
		Clock:    clock.RealClock{},
		Issuer:   &controllers.APIServerIssuerSource{Client: kube.Discovery().RESTClient(), Clock: clock.RealClock{}},
		Upgrades: &upgrade.Manager{},
		Options: controllers.Options{
			OperatorNamespace:      "openbao-operator-system",
			OperatorServiceAccount: "openbao-operator-controller-manager",
		},
	}
	require.NoError(t, reconciler.SetupWithManager(mgr))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	for _, ns := range watched {
		require.NoError(t, direct.Create(t.Context(), newCluster(ns, "bao")))
	}
	for _, ns := range watched {
		require.Eventually(t, func() bool {
			c := &openbaov1alpha1.OpenBaoCluster{}
			sts := &appsv1.StatefulSet{}
			return direct.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "bao"}, c) == nil && c.Status.Phase != "" &&
				direct.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "bao"}, sts) == nil
		}, time.Minute, 200*time.Millisecond, "the cluster in the watched namespace %s is provisioned", ns)
	}

	ignored := &openbaov1alpha1.OpenBaoCluster{}
	require.NoError(t, direct.Get(t.Context(), client.ObjectKey{Namespace: other, Name: "bao"}, ignored))
	assert.Empty(t, ignored.Finalizers, "no finalizer on the unwatched cluster")
	assert.Equal(t, openbaov1alpha1.OpenBaoClusterStatus{}, ignored.Status, "no status on the unwatched cluster")
	names := resources.NamesFor(ignored)
	for _, obj := range []client.Object{
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: names.StatefulSet}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: names.ClientService}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: names.SealSecret}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: names.ServiceAccount}},
	} {
		err := direct.Get(t.Context(), client.ObjectKey{Namespace: other, Name: obj.GetName()}, obj)
		assert.True(t, apierrors.IsNotFound(err), "%T %s/%s in the unwatched namespace: %v", obj, other, obj.GetName(), err)
	}
	var cms corev1.ConfigMapList
	require.NoError(t, direct.List(t.Context(), &cms, client.InNamespace(other), client.MatchingLabels{resources.LabelCluster: "bao"}))
	assert.Empty(t, cms.Items, "no ConfigMap of the cluster in the unwatched namespace")

	// The manager cannot even read there: its cache covers the watched namespaces only.
	err = mgr.GetClient().Get(t.Context(), client.ObjectKey{Namespace: other, Name: "bao"}, &openbaov1alpha1.OpenBaoCluster{})
	assert.Error(t, err, "the manager's client reads outside the watched namespaces")
}

// TestEmptyWatchNamespaceMeansAll: the AllNamespaces install mode and a plain kubectl
// install leave WATCH_NAMESPACE empty.
func TestEmptyWatchNamespaceMeansAll(t *testing.T) {
	assert.Empty(t, controllers.WatchedNamespaces(""))
	assert.Empty(t, controllers.WatchedNamespaces(" , "))
	assert.Nil(t, controllers.CacheOptions(nil).DefaultNamespaces, "a cluster-wide cache")
}
