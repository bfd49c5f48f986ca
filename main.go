// Command manager is the OpenBao operator: one binary that runs the controllers
// ("manager", the default) and the actions of upgrade Jobs ("executor").
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/controllers"
	"github.com/openbao-operator/openbao-operator/pkg/executor"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade/bluegreen"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade/rolling"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(openbaov1alpha1.AddToScheme(scheme))
}

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "executor" {
		// An upgrade Job that is deleted stops its action at once.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := executor.Main(ctx, args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	if len(args) > 0 && args[0] == "manager" {
		args = args[1:]
	}
	os.Exit(runManager(args))
}

func runManager(args []string) int {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	var (
		metricsAddr     = fs.String("metrics-bind-address", "0", "Address of the metrics endpoint (:8080), or 0 to disable it.")
		probeAddr       = fs.String("health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
		leaderElect     = fs.Bool("leader-elect", false, "Elect a leader so that only one replica of the operator acts.")
		imageRepository = fs.String("openbao-image-repository", resources.DefaultImageRepository, "Image repository of OpenBao used when spec.image is empty.")
		tokenFile       = fs.String("openbao-token-file", "/var/run/secrets/openbao.org/operator/token", "Projected service-account token (audience "+resources.OperatorAudience+") the operator logs in to OpenBao with; read-only OpenBao state needs no token.")
		workers         = fs.Int("max-concurrent-reconciles", controllers.DefaultMaxConcurrentReconciles, "Number of OpenBao clusters reconciled at once.")
		requestTimeout  = fs.Duration("openbao-request-timeout", upgrade.DefaultRequestTimeout, "Bound of each call to an OpenBao server; the servers of a cluster are asked in parallel.")
		podIDs          = fs.String("pod-ids", controllers.PodIDsAuto, "Who chooses the user and group IDs of OpenBao pods and upgrade Jobs: "+
			controllers.PodIDsAuto+" (the platform on OpenShift, detected by its "+controllers.OpenShiftSecurityGroup+" API group; the operator elsewhere), "+
			controllers.PodIDsPlatform+" or "+controllers.PodIDsOperator+".")
	)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	setupLog := ctrl.Log.WithName("setup")

	cfg, err := ctrl.GetConfig()
	if err != nil {
		setupLog.Error(err, "No Kubernetes configuration")
		return 1
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		setupLog.Error(err, "Cannot create the Kubernetes client")
		return 1
	}
	platform, err := controllers.DetectPlatform(kube.Discovery(), *podIDs)
	if err != nil {
		setupLog.Error(err, "Cannot tell who assigns pod IDs")
		return 1
	}
	namespaces := controllers.WatchedNamespaces(os.Getenv(controllers.WatchNamespaceEnv))
	setupLog.Info("Settings", "watchedNamespaces", namespaces, "platformAssignsPodIDs", platform.AssignsPodIDs)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(namespaces),
		Client:                 controllers.ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress: *probeAddr,
		LeaderElection:         *leaderElect,
		LeaderElectionID:       "openbao-operator.openbao.org",
		// Hand the lease over on a clean stop (a rollout, a drain, an operator upgrade), so
		// the next operator acts at once instead of waiting for the lease to expire. Safe:
		// the manager returns from Start only after every reconcile has ended.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		setupLog.Error(err, "Cannot create the manager")
		return 1
	}
	recorder, stopRecorder := controllers.NewEventRecorder(kube, mgr.GetScheme())
	defer stopRecorder()
	realClock := clock.RealClock{}
	// One observer, so one OpenBao session per cluster, for both controllers.
	observer := &upgrade.Observer{TokenFile: *tokenFile, RequestTimeout: *requestTimeout}
	if err := controllers.RegisterSessionMetrics(observer); err != nil {
		setupLog.Error(err, "Cannot register the OpenBao session metrics")
		return 1
	}
	reconciler := &controllers.OpenBaoClusterReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Scheme:    mgr.GetScheme(),
		Recorder:  recorder,
		Clock:     realClock,
		Issuer:    &controllers.APIServerIssuerSource{Client: kube.Discovery().RESTClient(), Clock: realClock},
		Observer:  observer,
		Upgrades: &upgrade.Manager{ImageRepository: *imageRepository, Strategies: upgrade.Strategies{
			openbaov1alpha1.RollingUpgrade:   rolling.Strategy{},
			openbaov1alpha1.BlueGreenUpgrade: bluegreen.Strategy{},
		}},
		Options: controllers.Options{
			ImageRepository:         *imageRepository,
			OperatorNamespace:       os.Getenv("POD_NAMESPACE"),
			OperatorServiceAccount:  os.Getenv("SERVICE_ACCOUNT_NAME"),
			OperatorImage:           os.Getenv("OPERATOR_IMAGE"),
			Platform:                platform,
			MaxConcurrentReconciles: *workers,
		},
	}
	if err := reconciler.SetupWithManager(mgr); err != nil {
		setupLog.Error(err, "Cannot set up the OpenBaoCluster controller")
		return 1
	}
	restores := &controllers.OpenBaoRestoreReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Scheme:    mgr.GetScheme(),
		Recorder:  recorder,
		Clock:     realClock,
		Observer:  observer,
		Options:   reconciler.Options,
	}
	if err := restores.SetupWithManager(mgr); err != nil {
		setupLog.Error(err, "Cannot set up the OpenBaoRestore controller")
		return 1
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		setupLog.Error(err, "Cannot add the health check")
		return 1
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		setupLog.Error(err, "Cannot add the ready check")
		return 1
	}
	setupLog.Info("Starting the OpenBao operator")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
