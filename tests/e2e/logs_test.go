package e2e

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/openbao-operator/openbao-operator/tests/localcluster/cluster"
)

// kubectl runs the kubectl of the kube assets with the given kubeconfig.
func kubectl(ctx context.Context, kubeconfig string, args ...string) *exec.Cmd {
	root, _ := cluster.FindRepoRoot()
	bin := filepath.Join(envOr("KUBE_ASSETS", filepath.Join(root, ".cache", "kube", "1.35.4")), "kubectl")
	return exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
}

func kubectlOutput(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := kubectl(ctx, kubeconfig, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		return out.String() + errOut.String(), err
	}
	return out.String(), nil
}

// userKubeconfig writes a kubeconfig for user, authenticated by a client
// certificate of the cluster CA.
func userKubeconfig(t *testing.T, user string) string {
	t.Helper()
	cfg, err := env.ControlPlane().UserRESTConfig(user)
	if err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: user}
	kc.CurrentContext = "local"
	path := filepath.Join(t.TempDir(), user+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// containerLog reads the node's file of a container's current run.
func containerLog(t *testing.T, pod *corev1.Pod, container string) string {
	t.Helper()
	dir := filepath.Join(env.ContainerLogDir(), pod.Namespace+"_"+pod.Name+"_"+string(pod.UID), container)
	var restarts int32
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == container {
			restarts = s.RestartCount
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(int(restarts))+".log"))
	if err != nil {
		t.Fatalf("log file of %s/%s: %v", pod.Name, container, err)
	}
	return string(data)
}

// TestKubectlLogs reads the operator's and an OpenBao server's output with
// `kubectl logs` (the API server's pods/log calls the node's kubelet API),
// follows the operator's log while it forms a cluster, and checks who may
// read logs.
func TestKubectlLogs(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "e2e-logs")
	admin := env.Kubeconfig()

	// Follow the operator from now on: creating a cluster must show up.
	followCtx, stopFollow := context.WithTimeout(ctx, waitFormed)
	defer stopFollow()
	follow := kubectl(followCtx, admin, "logs", "-f", "--tail=0", "-n", cluster.OperatorNamespace, "deploy/"+cluster.OperatorDeployment)
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var followErr bytes.Buffer
	follow.Stderr = &followErr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
	}()
	defer func() {
		stopFollow()
		_ = follow.Wait()
	}()
	// kubectl logs -f connects before it prints anything; give it a moment
	// so that the cluster's first reconcile is not before --tail=0.
	time.Sleep(2 * time.Second)

	if err := k8s.Create(ctx, newCluster(ns, "logs", 1)); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	streamed := ""
	deadline := time.After(waitShort)
	for streamed == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("kubectl logs -f ended before the operator logged the new cluster: %s", followErr.String())
			}
			if strings.Contains(l, ns+"/logs") || strings.Contains(l, `"namespace":"`+ns+`"`) {
				streamed = l
			}
		case <-deadline:
			t.Fatalf("kubectl logs -f of the operator showed nothing about %s/logs within %s (%s)", ns, waitShort, followErr.String())
		}
	}
	t.Logf("kubectl logs -f streamed: %s", streamed)

	c := waitFullyFormed(t, ns, "logs", 1)
	pod := serverPods(t, c)[0]

	// An OpenBao server's output, as in the node's log file.
	out, err := kubectlOutput(t, admin, "logs", "-n", ns, pod.Name, "-c", "openbao")
	if err != nil {
		t.Fatalf("kubectl logs %s: %v: %s", pod.Name, err, out)
	}
	file := containerLog(t, &pod, "openbao")
	if out == "" || !strings.HasPrefix(file, out) || !strings.Contains(out, "OpenBao server") {
		t.Fatalf("kubectl logs %s = %q; the node's log file holds %q", pod.Name, out, file)
	}

	// The operator's output.
	ops, err := cs.CoreV1().Pods(cluster.OperatorNamespace).List(ctx, metav1.ListOptions{LabelSelector: "control-plane=controller-manager"})
	if err != nil || len(ops.Items) == 0 {
		t.Fatalf("operator pods: %v (%d)", err, len(ops.Items))
	}
	op := ops.Items[0]
	out, err = kubectlOutput(t, admin, "logs", "-n", cluster.OperatorNamespace, op.Name, "--tail=-1")
	if err != nil {
		t.Fatalf("kubectl logs %s: %v: %s", op.Name, err, out)
	}
	file = containerLog(t, &op, op.Spec.Containers[0].Name)
	if out == "" || !strings.HasPrefix(file, out) || !strings.Contains(out, streamed) {
		t.Fatalf("kubectl logs %s (%d bytes) is not the node's log file (%d bytes) or lacks the streamed line", op.Name, len(out), len(file))
	}

	// Who may read logs: the API server checks pods/log; the node checks
	// that its caller (the API server) may use nodes/proxy.
	nobody := userKubeconfig(t, "e2e-nobody")
	if out, err := kubectlOutput(t, nobody, "logs", "-n", ns, pod.Name, "-c", "openbao"); err == nil || !strings.Contains(out, "Forbidden") && !strings.Contains(out, "forbidden") {
		t.Fatalf("kubectl logs as a user without rights: %v: %s; want forbidden", err, out)
	}
	_, err = cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "log-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}, Verbs: []string{"get", "list"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "log-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "log-reader"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "e2e-reader"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reader := userKubeconfig(t, "e2e-reader")
	eventually(t, waitShort, "kubectl logs as a user with pods/log", func() (bool, string) {
		out, err := kubectlOutput(t, reader, "logs", "-n", ns, pod.Name, "-c", "openbao", "--tail=1")
		return err == nil && out != "", out
	})
	raw := "/api/v1/nodes/" + pod.Spec.NodeName + "/proxy/containerLogs/" + ns + "/" + pod.Name + "/openbao"
	if out, err := kubectlOutput(t, reader, "get", "--raw", raw); err == nil || !strings.Contains(out, "forbidden") && !strings.Contains(out, "Forbidden") {
		t.Fatalf("the node's kubelet API as a user without nodes/proxy: %v: %s; want forbidden", err, out)
	}
	if out, err := kubectlOutput(t, admin, "get", "--raw", raw+"?tailLines=1"); err != nil || out == "" {
		t.Fatalf("the node's kubelet API through the API server as the admin: %v: %q", err, out)
	}
}
