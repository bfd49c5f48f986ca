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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/controllers"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/pki"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// startManager runs the operator's controller in a manager built as main.go builds it, with
// the cache of cacheOpts and the client of controllers.ClientOptions.
func startManager(t *testing.T, cacheOpts cache.Options, observer controllers.Observer, workers int) ctrl.Manager {
	t.Helper()
	mgr := newManager(t, restConfig, cacheOpts, observer, workers)
	runManager(t, mgr)
	return mgr
}

// newManager builds the manager and its OpenBaoCluster controller on cfg, not yet started.
func newManager(t *testing.T, cfg *rest.Config, cacheOpts cache.Options, observer controllers.Observer, workers int) ctrl.Manager {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  cacheOpts,
		Client:                 controllers.ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	require.NoError(t, err)
	kube := kubernetes.NewForConfigOrDie(cfg)
	reconciler := &controllers.OpenBaoClusterReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Scheme:    scheme,
		Recorder:  mgr.GetEventRecorder("openbao-operator"),
		Clock:     clock.RealClock{},
		Issuer:    &controllers.APIServerIssuerSource{Client: kube.Discovery().RESTClient(), Clock: clock.RealClock{}},
		Observer:  observer,
		Upgrades:  &upgrade.Manager{},
		Options: controllers.Options{
			OperatorNamespace:       "openbao-operator-system",
			OperatorServiceAccount:  "openbao-operator-controller-manager",
			MaxConcurrentReconciles: workers,
		},
	}
	require.NoError(t, reconciler.SetupWithManager(mgr))
	return mgr
}

// runManager starts mgr until the test ends and waits for its caches, for at most a minute:
// an informer the operator's permissions do not allow never syncs.
func runManager(t *testing.T, mgr ctrl.Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	syncCtx, stop := context.WithTimeout(t.Context(), time.Minute)
	defer stop()
	require.True(t, mgr.GetCache().WaitForCacheSync(syncCtx), "caches synced")
}

// userTLSSecret is a certificate for the cluster, as a user brings it: no label of the
// operator's.
func userTLSSecret(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, name string) *corev1.Secret {
	t.Helper()
	ca, err := pki.NewCA("user CA", time.Now(), time.Hour)
	require.NoError(t, err)
	kp, err := pki.IssueServerCert(ca, pki.ServerCertRequest{CommonName: c.Name, DNSNames: resources.ServerDNSNames(c), Validity: time.Hour}, time.Now())
	require.NoError(t, err)
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: kp.CertPEM, corev1.TLSPrivateKeyKey: kp.KeyPEM, "ca.crt": ca.CertPEM},
	}
}

// TestCacheHoldsOnlyWhatTheOperatorCreated: the manager's cache never receives a ConfigMap
// or Pod the operator did not label, while the user's TLS Secret, which it reads by name, is
// found; an object of the cluster that lost its labels is found again and labelled.
func TestCacheHoldsOnlyWhatTheOperatorCreated(t *testing.T) {
	direct, err := client.New(restConfig, client.Options{Scheme: scheme})
	require.NoError(t, err)
	ns := createNamespace(t, direct, "cache-")
	foreign := []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "helm-release"}, Data: map[string][]byte{"release": []byte("x")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "labelled-by-someone-else", Labels: map[string]string{resources.LabelManagedBy: "Helm"}}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-settings"}, Data: map[string]string{"k": "v"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}},
	}
	for _, obj := range foreign {
		require.NoError(t, direct.Create(t.Context(), obj))
	}
	c := newCluster(ns, "bao")
	c.Spec.TLS = &openbaov1alpha1.TLSSpec{ExistingSecret: "my-tls"}
	userTLS := userTLSSecret(t, c, "my-tls")
	require.NoError(t, direct.Create(t.Context(), userTLS))

	mgr := startManager(t, controllers.CacheOptions(nil), nil, 0)
	require.NoError(t, direct.Create(t.Context(), c))

	require.Eventually(t, func() bool {
		sts := &appsv1.StatefulSet{}
		return direct.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "bao"}, sts) == nil
	}, time.Minute, 200*time.Millisecond, "the servers are created: the user's TLS Secret was found")
	got := &openbaov1alpha1.OpenBaoCluster{}
	require.NoError(t, direct.Get(t.Context(), client.ObjectKeyFromObject(c), got))
	if cond := meta.FindStatusCondition(got.Status.Conditions, openbaov1alpha1.ConditionDegraded); cond != nil {
		assert.NotEqual(t, openbaov1alpha1.ReasonInvalidSpec, cond.Reason, cond.Message)
	}

	// Secrets are not cached at all (TestOperatorNeedsNoListOrWatchOnSecrets); asking the
	// cache for one would start an informer, so only the other kinds are looked up there.
	cached := mgr.GetCache()
	for _, obj := range foreign {
		if _, ok := obj.(*corev1.Secret); ok {
			continue
		}
		key := client.ObjectKeyFromObject(obj)
		fresh := obj.DeepCopyObject().(client.Object)
		require.NoError(t, direct.Get(t.Context(), key, fresh), "%T %s exists", obj, key)
		err := cached.Get(t.Context(), key, fresh)
		assert.True(t, apierrors.IsNotFound(err), "%T %s must not be in the operator's cache: %v", obj, key, err)
	}
	var configMaps corev1.ConfigMapList
	require.NoError(t, cached.List(t.Context(), &configMaps, client.InNamespace(ns)))
	for _, cm := range configMaps.Items {
		assert.Equal(t, resources.ManagedBy, cm.Labels[resources.LabelManagedBy], "ConfigMap %s in the cache", cm.Name)
	}
	assert.NotEmpty(t, configMaps.Items, "the cluster's ConfigMap is in the cache")

	// An object of the cluster whose labels were removed leaves the cache; the operator
	// finds it by name, instead of failing to create it again, and labels it again.
	names2 := resources.NamesFor(got)
	for _, obj := range []client.Object{
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: names2.HeadlessService}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: names2.SealSecret}},
	} {
		require.NoError(t, direct.Get(t.Context(), client.ObjectKeyFromObject(obj), obj))
		patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
		obj.SetLabels(nil)
		require.NoError(t, direct.Patch(t.Context(), obj, patch))
		require.Eventually(t, func() bool {
			if err := direct.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); err != nil {
				return false
			}
			return obj.GetLabels()[resources.LabelManagedBy] == resources.ManagedBy && obj.GetLabels()[resources.LabelCluster] == "bao"
		}, time.Minute, 200*time.Millisecond, "%T %s is labelled again", obj, obj.GetName())
	}
	seal := &corev1.Secret{}
	require.NoError(t, direct.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: names2.SealSecret}, seal))
	var seals corev1.SecretList
	require.NoError(t, direct.List(t.Context(), &seals, client.InNamespace(ns), client.MatchingLabels{resources.LabelCluster: "bao"}))
	assert.Len(t, seals.Items, 1, "still one seal key, the first")
}

// TestBlockedClusterDoesNotBlockAnother: while one cluster's pass waits on servers that do
// not answer, another cluster is reconciled at once.
func TestBlockedClusterDoesNotBlockAnother(t *testing.T) {
	direct, err := client.New(restConfig, client.Options{Scheme: scheme})
	require.NoError(t, err)
	ns := createNamespace(t, direct, "workers-")
	addr, accepted := baotest.SilentServer(t)
	// Every server address leads to the silent server, and a call waits a minute for it:
	// far longer than the other cluster may wait.
	observer := &upgrade.Observer{
		RequestTimeout: time.Minute,
		NewClient: func(cfg openbao.Config) (openbao.Client, error) {
			cfg.Address = addr
			return openbao.New(cfg)
		},
	}
	startManager(t, controllers.CacheOptions([]string{ns}), observer, 0)

	// The stuck cluster, and a server pod of it with an address (the local API server runs
	// no kubelet: the pod is created here, as the StatefulSet controller would).
	stuck := newCluster(ns, "stuck")
	require.NoError(t, direct.Create(t.Context(), stuck))
	require.NoError(t, direct.Get(t.Context(), client.ObjectKeyFromObject(stuck), stuck))
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "stuck-0", Labels: resources.Labels(stuck, resources.ComponentServer)},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "openbao", Image: "openbao"}}},
	}
	pod.Labels[resources.LabelStatefulSet] = "stuck"
	require.NoError(t, direct.Create(t.Context(), pod))
	pod.Status.PodIP = "10.0.0.1"
	require.NoError(t, direct.Status().Update(t.Context(), pod))
	require.Eventually(t, func() bool { return accepted() > 0 }, time.Minute, 100*time.Millisecond,
		"the stuck cluster's pass asks its server")

	start := time.Now()
	free := newCluster(ns, "free")
	require.NoError(t, direct.Create(t.Context(), free))
	require.Eventually(t, func() bool {
		c := &openbaov1alpha1.OpenBaoCluster{}
		return direct.Get(t.Context(), client.ObjectKeyFromObject(free), c) == nil && c.Status.Phase != ""
	}, 20*time.Second, 100*time.Millisecond, "the free cluster is reconciled while the stuck one waits")
	t.Logf("the free cluster had its status %s after its creation", time.Since(start).Round(time.Millisecond))

	c := &openbaov1alpha1.OpenBaoCluster{}
	require.NoError(t, direct.Get(t.Context(), client.ObjectKeyFromObject(stuck), c))
	assert.Empty(t, c.Status.Members, "the stuck cluster's observation is still waiting on its server")
}
