package olm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const operatorNamespace = "openbao-operator-system"

// TestKubectlApplyKustomize installs config/default the way people install the
// operator without OLM, `kubectl apply -k config/default`, on a real
// kube-apiserver: the kustomization must build with kubectl's own kustomize,
// every object must pass the server's strict field validation, the operator's
// pod must be admitted under the namespace's "restricted" Pod Security
// Standard, the bundle's alm-examples must be accepted by the installed CRD,
// and `kubectl delete -k` must remove it all again.
func TestKubectlApplyKustomize(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run this test through `make test-bundle`, which builds kube-apiserver, etcd and kubectl with `make kube-assets`")
	}
	kubectlPath := filepath.Join(assets, "kubectl")
	for _, bin := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			t.Fatalf("%s is missing from KUBEBUILDER_ASSETS=%s: run `make kube-assets`", bin, assets)
		}
	}

	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop kube-apiserver: %v", err)
		}
	})
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfigBytes, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kubeconfigBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubectlPath, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	out := kubectl("apply", "-k", "../../config/default")
	if strings.Contains(out, "Warning:") {
		t.Errorf("kubectl apply -k printed warnings:\n%s", out)
	}

	// What the operator needs is there, in its namespace.
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: operatorNamespace}, ns); err != nil {
		t.Fatalf("namespace %s: %v", operatorNamespace, err)
	}
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s does not enforce the restricted Pod Security Standard: %v", operatorNamespace, ns.Labels)
	}
	dep := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: "openbao-operator-controller-manager"}, dep); err != nil {
		t.Fatalf("operator Deployment: %v", err)
	}
	checkPod(t, dep.Name, dep.Spec.Template.Spec)
	sa := dep.Spec.Template.Spec.ServiceAccountName
	for _, obj := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: sa}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: "openbao-operator-leader-election-role"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: "openbao-operator-leader-election-rolebinding"}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "openbao-operator-manager-role"}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "openbao-operator-manager-rolebinding"}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "openbao-operator-oidc-discovery-role"}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "openbao-operator-oidc-discovery-rolebinding"}},
	} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Errorf("%T %s: %v", obj, obj.GetName(), err)
		}
	}
	crb := &rbacv1.ClusterRoleBinding{}
	if err := c.Get(ctx, client.ObjectKey{Name: "openbao-operator-manager-rolebinding"}, crb); err == nil {
		if len(crb.Subjects) != 1 || crb.Subjects[0].Name != sa || crb.Subjects[0].Namespace != operatorNamespace || crb.RoleRef.Name != "openbao-operator-manager-role" {
			t.Errorf("the manager ClusterRoleBinding binds %v to %s, want the operator's ServiceAccount %s/%s", crb.Subjects, crb.RoleRef.Name, operatorNamespace, sa)
		}
	}

	// The kubelet would create this pod; the API server's PodSecurity admission
	// decides first. Without a controller manager here, ask it directly.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: "operator-pod-security", Labels: dep.Spec.Template.Labels},
		Spec:       *dep.Spec.Template.Spec.DeepCopy(),
	}
	if err := c.Create(ctx, pod, client.DryRunAll); err != nil {
		t.Errorf("the operator pod is not admitted in %s: %v", operatorNamespace, err)
	}
	// ... and the same admission refuses a pod that is less locked down, so the
	// check above is a real one.
	weaker := pod.DeepCopy()
	weaker.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
	if err := c.Create(ctx, weaker, client.DryRunAll); err == nil {
		t.Errorf("a pod allowing privilege escalation was admitted in %s: Pod Security is not enforced there", operatorNamespace)
	}

	// The CRD becomes Established and accepts the console's example.
	crd := &apiextensionsv1.CustomResourceDefinition{}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Name: "openbaoclusters.openbao.org"}, crd); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("CRD openbaoclusters.openbao.org not established: %v", err)
	}
	b := loadBundle(t)
	for i, ex := range almExamples(t, b.CSV) {
		u := &unstructured.Unstructured{Object: ex}
		u.SetNamespace("default")
		if err := c.Create(ctx, u, client.DryRunAll); err != nil {
			t.Errorf("alm-examples[%d] is rejected by the API server: %v", i, err)
		}
	}
	bad := &unstructured.Unstructured{Object: almExamples(t, b.CSV)[0]}
	bad.SetNamespace("default")
	if err := unstructured.SetNestedField(bad.Object, int64(4), "spec", "replicas"); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, bad, client.DryRunAll); err == nil {
		t.Error("the API server accepted an OpenBaoCluster with 4 replicas: the CRD's validation is not installed")
	}

	// Uninstalling removes what was installed.
	kubectl("delete", "-k", "../../config/default", "--wait=false")
	if err := c.Get(ctx, client.ObjectKey{Name: "openbao-operator-manager-role"}, &rbacv1.ClusterRole{}); err == nil {
		t.Error("kubectl delete -k left the manager ClusterRole behind")
	} else if !apierrors.IsNotFound(err) {
		t.Error(err)
	}
}
