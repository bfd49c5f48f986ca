package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/openbao/openbao/api/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// What the demo creates: the sample cluster of config/samples and the
// service account its self-initialization grants the "demo" role to.
const (
	demoNamespace      = "default"
	demoCluster        = "openbaocluster-sample"
	demoServiceAccount = "demo"
	demoRole           = "demo"
	demoAudience       = "openbao"
	demoSample         = "config/samples/openbao_v1alpha1_openbaocluster.yaml"
	demoWait           = "15m"
	// demoUpgradeVersion is the release the demo upgrades the sample to.
	demoUpgradeVersion = "2.7.2"
)

// demo shows what a user sees: the sample cluster created, becoming
// Available, and an application logging in with its service-account token
// (never a root token) to write and read secrets through every server.
func demo(f flags) error {
	st, err := readState(f.dir)
	if err != nil {
		return fmt.Errorf("no local cluster is running (start it with `make dev-up`): %w", err)
	}
	// run shows the command; its output too unless it is a secret.
	run := func(showOutput bool, args ...string) ([]byte, error) {
		fmt.Printf("\n$ kubectl %s\n", strings.Join(args, " "))
		cmd := exec.Command(filepath.Join(st.KubeAssets, "kubectl"), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+st.Kubeconfig)
		cmd.Dir = st.RepoRoot
		out, err := cmd.CombinedOutput()
		if showOutput || err != nil {
			os.Stdout.Write(out)
		}
		if err != nil {
			return out, fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
		}
		return out, nil
	}
	kubectl := func(args ...string) ([]byte, error) { return run(true, args...) }
	start := time.Now()
	ctx := context.Background()

	fmt.Println("== An OpenBao cluster of 3 servers, version 2.6.2, from the sample")
	if _, err := kubectl("apply", "-n", demoNamespace, "-f", demoSample); err != nil {
		return err
	}
	if _, err := kubectl("create", "serviceaccount", "-n", demoNamespace, demoServiceAccount); err != nil {
		return err
	}
	fmt.Println("\n== Waiting until the operator reports the cluster Available (self-initialized, unsealed, one active node)")
	if _, err := kubectl("wait", "-n", demoNamespace, "--for=condition=Available", "openbaocluster/"+demoCluster, "--timeout="+demoWait); err != nil {
		_, _ = kubectl("get", "bao,pods,pvc", "-n", demoNamespace, "-o", "wide")
		_, _ = kubectl("describe", "bao", "-n", demoNamespace, demoCluster)
		return err
	}
	fmt.Printf("Available after %s (a quorum of servers is ready); waiting for all three\n", time.Since(start).Round(time.Second))
	if _, err := kubectl("wait", "-n", demoNamespace, "--for=jsonpath={.status.readyReplicas}=3", "openbaocluster/"+demoCluster, "--timeout="+demoWait); err != nil {
		return err
	}
	cs, err := clientset(st.Kubeconfig)
	if err != nil {
		return err
	}
	fmt.Println("\n== What the operator reports, once every server is a Raft voter")
	if err := waitVoters(ctx, cs, 3); err != nil {
		return err
	}
	fmt.Printf("all servers ready and voting after %s\n", time.Since(start).Round(time.Second))
	if _, err := kubectl("get", "bao", "-n", demoNamespace, "-o", "wide"); err != nil {
		return err
	}
	if err := printMembers(ctx, cs); err != nil {
		return err
	}
	fmt.Println()
	if _, err := kubectl("get", "statefulset,pods,pvc,svc", "-n", demoNamespace, "-l", resources.LabelInstance+"="+demoCluster); err != nil {
		return err
	}

	fmt.Printf("\n== An application logs in with its service-account token (audience %q) through OpenBao's JWT auth, role %q\n", demoAudience, demoRole)
	out, err := run(false, "create", "token", demoServiceAccount, "-n", demoNamespace, "--audience", demoAudience, "--duration", "10m")
	if err != nil {
		return err
	}
	jwt := strings.TrimSpace(string(out))
	fmt.Printf("(a JSON Web Token of %d bytes signed by the API server, valid 10 minutes; OpenBao checks it against the issuer's keys)\n", len(jwt))
	servers, err := demoServers(ctx, cs)
	if err != nil {
		return err
	}
	leader := servers[0]
	for _, s := range servers {
		if s.active {
			leader = s
		}
	}
	client, err := leader.client()
	if err != nil {
		return err
	}
	login, err := client.Logical().WriteWithContext(ctx, "auth/jwt/login", map[string]any{"role": demoRole, "jwt": jwt})
	if err != nil {
		return fmt.Errorf("JWT login as %s: %w", demoServiceAccount, err)
	}
	if login == nil || login.Auth == nil {
		return errors.New("JWT login returned no token")
	}
	fmt.Printf("logged in at %s: policies %v, token TTL %ds (no root token anywhere)\n", leader.pod, login.Auth.Policies, login.Auth.LeaseDuration)
	token := login.Auth.ClientToken

	fmt.Println("\n== Writing secrets through the active node, reading them through every server")
	client.SetToken(token)
	kv := client.KVv2("secret")
	secrets := map[string]map[string]any{
		"demo/database": {"username": "app", "password": "s3cr3t-" + time.Now().Format("150405")},
		"demo/api-key":  {"key": "k-12345"},
		"demo/greeting": {"message": "hello from OpenBao on the local cluster"},
	}
	paths := make([]string, 0, len(secrets))
	for p := range secrets {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		var lastErr error
		// A fresh kv-v2 mount finishes its setup in the background.
		for attempt := 0; attempt < 60; attempt++ {
			if _, lastErr = kv.Put(ctx, p, secrets[p]); lastErr == nil {
				break
			}
			time.Sleep(time.Second)
		}
		if lastErr != nil {
			return fmt.Errorf("write secret/%s: %w", p, lastErr)
		}
		fmt.Printf("  wrote secret/%s via %s\n", p, leader.pod)
	}
	readAll := func(servers []demoServer) error {
		for _, s := range servers {
			c, err := s.client()
			if err != nil {
				return err
			}
			c.SetToken(token)
			for _, p := range paths {
				// A standby answers reads from its own copy of the data, which may
				// lag a moment behind the last write.
				var got *api.KVSecret
				for attempt := 0; attempt < 30; attempt++ {
					if got, err = c.KVv2("secret").Get(ctx, p); err == nil {
						break
					}
					time.Sleep(time.Second)
				}
				if err != nil {
					return fmt.Errorf("read secret/%s via %s: %w", p, s.pod, err)
				}
				for k, v := range secrets[p] {
					if got.Data[k] != v {
						return fmt.Errorf("secret/%s via %s: %s=%v, want %v", p, s.pod, k, got.Data[k], v)
					}
				}
			}
			role := "standby"
			if s.active {
				role = "active"
			}
			fmt.Printf("  read all %d secrets via %s (%s)\n", len(paths), s.pod, role)
		}
		return nil
	}
	if err := readAll(servers); err != nil {
		return err
	}
	if _, err := kv.Put(ctx, "other/thing", map[string]any{"x": "y"}); err == nil {
		return errors.New("the demo token could write outside secret/demo/: its policy is too wide")
	}
	fmt.Println("  writing secret/other/thing is refused: the demo policy covers secret/demo/ only")

	fmt.Printf("\n== Upgrading the cluster to %s: change spec.version and watch (Rolling: highest ordinal first, leadership moved away before the active server is replaced)\n", demoUpgradeVersion)
	if _, err := kubectl("patch", "bao", "-n", demoNamespace, demoCluster, "--type=merge", "-p", `{"spec":{"version":"`+demoUpgradeVersion+`"}}`); err != nil {
		return err
	}
	if err := watchUpgrade(ctx, cs, demoUpgradeVersion); err != nil {
		_, _ = kubectl("describe", "bao", "-n", demoNamespace, demoCluster)
		return err
	}
	if _, err := kubectl("get", "bao", "-n", demoNamespace, "-o", "wide"); err != nil {
		return err
	}
	if err := printMembers(ctx, cs); err != nil {
		return err
	}
	fmt.Println("\n== The secrets written before the upgrade, read through every upgraded server")
	if servers, err = demoServers(ctx, cs); err != nil {
		return err
	}
	if err := readAll(servers); err != nil {
		return err
	}

	fmt.Printf("\n== Demo done in %s\n", time.Since(start).Round(time.Second))
	return nil
}

type demoServer struct {
	pod, ip string
	active  bool
	caPEM   []byte
}

func (s demoServer) client() (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = fmt.Sprintf("https://%s:%d", s.ip, resources.APIPort)
	cfg.MaxRetries = 0
	if err := cfg.ConfigureTLS(&api.TLSConfig{CACertBytes: s.caPEM,
		TLSServerName: resources.PodDNSName(demoClusterObject(), s.pod)}); err != nil {
		return nil, err
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.ClearToken()
	return c, nil
}

// demoServers lists the sample's server pods with the CA of their listener.
// The pods are reached at their pod addresses: the host is on the pod network.
func demoServers(ctx context.Context, cs kubernetes.Interface) ([]demoServer, error) {
	c := demoClusterObject()
	secret, err := cs.CoreV1().Secrets(demoNamespace).Get(ctx, resources.TLSSecretName(c), metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	pods, err := cs.CoreV1().Pods(demoNamespace).List(ctx, metav1.ListOptions{LabelSelector: resources.LabelInstance + "=" + demoCluster})
	if err != nil {
		return nil, err
	}
	var out []demoServer
	for _, p := range pods.Items {
		if p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning {
			continue
		}
		s := demoServer{pod: p.Name, ip: p.Status.PodIP, caPEM: secret.Data["ca.crt"]}
		cl, err := s.client()
		if err != nil {
			return nil, err
		}
		if h, err := cl.Sys().HealthWithContext(ctx); err == nil && h.Initialized && !h.Sealed && !h.Standby {
			s.active = true
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("no running server pod")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pod < out[j].pod })
	return out, nil
}

func clientset(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// demoClusterObject carries the names the resources package derives
// object names from.
func demoClusterObject() *openbaov1alpha1.OpenBaoCluster {
	return &openbaov1alpha1.OpenBaoCluster{ObjectMeta: metav1.ObjectMeta{Name: demoCluster, Namespace: demoNamespace}}
}

// waitVoters waits until the operator reports n members that are unsealed
// Raft voters, autopilot-healthy, with one active node.
func waitVoters(ctx context.Context, cs kubernetes.Interface, n int) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		c, err := getCluster(ctx, cs)
		if err == nil {
			voters, active := 0, 0
			for _, m := range c.Status.Members {
				if m.Voter && m.Healthy && !m.Sealed && m.Initialized {
					voters++
				}
				if m.Active {
					active++
				}
			}
			if voters == n && active == 1 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the operator did not report %d healthy voters within 10 minutes (last error: %v)", n, err)
		}
		time.Sleep(2 * time.Second)
	}
}

func getCluster(ctx context.Context, cs kubernetes.Interface) (*openbaov1alpha1.OpenBaoCluster, error) {
	raw, err := cs.Discovery().RESTClient().Get().
		AbsPath("/apis", openbaov1alpha1.GroupVersion.Group, openbaov1alpha1.GroupVersion.Version, "namespaces", demoNamespace, "openbaoclusters", demoCluster).
		DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	c := &openbaov1alpha1.OpenBaoCluster{}
	return c, json.Unmarshal(raw, c)
}

// printMembers prints status.members as a table.
func printMembers(ctx context.Context, cs kubernetes.Interface) error {
	c, err := getCluster(ctx, cs)
	if err != nil {
		return err
	}
	fmt.Printf("\nstatus.members of %s (leader %s, version %s, phase %s):\n", c.Name, c.Status.Leader, c.Status.CurrentVersion, c.Status.Phase)
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  POD\tVERSION\tINITIALIZED\tSEALED\tACTIVE\tVOTER\tHEALTHY")
	for _, m := range c.Status.Members {
		fmt.Fprintf(w, "  %s\t%s\t%v\t%v\t%v\t%v\t%v\n", m.Pod, m.Version, m.Initialized, m.Sealed, m.Active, m.Voter, m.Healthy)
	}
	return w.Flush()
}

// watchUpgrade prints the upgrade's progress as the operator reports it in status.upgrade,
// until the cluster runs version; a halted upgrade is an error.
func watchUpgrade(ctx context.Context, cs kubernetes.Interface, version string) error {
	start := time.Now()
	deadline := start.Add(15 * time.Minute)
	last := ""
	for {
		c, err := getCluster(ctx, cs)
		if err == nil {
			if u := c.Status.Upgrade; u != nil {
				line := fmt.Sprintf("%-20s %-8s %s", u.Step, u.CurrentPod, u.Message)
				if line != last {
					fmt.Printf("  [%4ds] %s\n", int(time.Since(start).Seconds()), line)
					last = line
				}
				if u.Step == "Halted" {
					return fmt.Errorf("the upgrade halted: %s", u.Message)
				}
			} else if c.Status.CurrentVersion == version {
				fmt.Printf("  [%4ds] upgraded: every server runs %s (status.currentVersion)\n", int(time.Since(start).Seconds()), version)
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the upgrade to %s did not finish within 15 minutes (last error: %v)", version, err)
		}
		time.Sleep(time.Second)
	}
}
