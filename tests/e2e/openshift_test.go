package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/openshift"
)

// sccFirstID is the first uid and gid of the namespace range the OpenShift test assigns,
// in OpenShift's format and size.
const (
	sccFirstID int64 = 1000680000
	sccRange         = "1000680000/10000"
)

// TestOpenShiftRestrictedSCC runs the operator as on OpenShift: discovery serves
// security.openshift.io, and in the cluster's namespace only pods with the IDs of the
// namespace's range are admitted, unset IDs being filled from it (the local cluster's
// emulation of restricted-v2). The operator must leave the IDs to the platform; OpenBao
// then forms a cluster, survives a BlueGreen and a Rolling upgrade with snapshot and
// step-down Jobs, and its data files belong to the assigned user.
func TestOpenShiftRestrictedSCC(t *testing.T) {
	ctx := context.Background()
	if err := env.EnableOpenShiftSCC(ctx); err != nil {
		t.Fatalf("emulate OpenShift's SCC: %v", err)
	}
	t.Cleanup(func() {
		if err := env.DisableOpenShiftSCC(context.Background()); err != nil {
			t.Errorf("remove the SCC emulation: %v", err)
		}
		if err := env.RestartOperator(context.Background()); err != nil {
			t.Errorf("restart the operator after the SCC emulation: %v", err)
		}
	})
	if err := env.RestartOperator(ctx); err != nil {
		t.Fatalf("restart the operator so that it discovers the platform: %v", err)
	}

	ns := newNamespace(t, "e2e-openshift")
	nsObj, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Annotations = map[string]string{openshift.UIDRangeAnnotation: sccRange, openshift.SupplementalGroupsAnnotation: sccRange}
	if _, err := cs.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("annotate namespace %s with its ID range: %v", ns, err)
	}
	// The emulation is real admission: a pod with the IDs an operator outside OpenShift
	// would choose is refused here (once the API server's namespace cache has the
	// annotations).
	refused := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "fixed-ids", Namespace: ns},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: new(resources.RunAsUser), FSGroup: new(resources.FSGroup)},
			Containers:      []corev1.Container{{Name: "c", Image: "quay.io/openbao/openbao:" + openBaoVersion}},
		},
	}
	eventually(t, waitShort, fmt.Sprintf("a pod with runAsUser %d refused in %s", resources.RunAsUser, ns), func() (bool, string) {
		_, err := cs.CoreV1().Pods(ns).Create(ctx, refused, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "security context constraint"), fmt.Sprint(err)
	})

	jobPods := watchJobPods(t, ns)
	want := newCluster(ns, "bao", 3)
	want.Spec.Upgrade.Strategy = openbaov1alpha1.BlueGreenUpgrade
	want.Spec.Upgrade.BlueGreen = &openbaov1alpha1.BlueGreenSpec{VerificationPeriod: &metav1.Duration{Duration: 20 * time.Second}}
	want.Spec.Upgrade.PreUpgradeSnapshot = true
	if err := k8s.Create(ctx, want); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	c := waitFullyFormed(t, ns, "bao", 3)
	checkAssignedIDs(t, c)
	checkDataOwnedByAssignedUser(t, c)
	app := appLogin(t, c, &serverPods(t, c)[0])
	if _, err := app.Logical().Write("secret/data/e2e/scc", map[string]any{"data": map[string]any{"v": "kept"}}); err != nil {
		t.Fatalf("write a secret: %v", err)
	}

	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Version = upgradeVersion })
	c = waitUpgraded(t, ns, "bao", upgradeVersion, 3)
	checkAllOnVersion(t, c, upgradeVersion, 3)
	checkAssignedIDs(t, c)

	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) {
		s.Upgrade.Strategy = openbaov1alpha1.RollingUpgrade
		s.Image = "docker.io/openbao/openbao:" + upgradeVersion
	})
	eventually(t, waitUpgrade, "the Rolling image change", func() (bool, string) {
		c := getCluster(t, ns, "bao")
		return c.Status.Upgrade == nil && c.Status.CurrentImage == "docker.io/openbao/openbao:"+upgradeVersion, describeCluster(ns, c)
	})
	c = waitFullyFormed(t, ns, "bao", 3)
	checkAssignedIDs(t, c)
	checkDataOwnedByAssignedUser(t, c)
	app = appLogin(t, c, &serverPods(t, c)[0])
	got, err := app.Logical().Read("secret/data/e2e/scc")
	if err != nil || got == nil {
		t.Fatalf("read the secret written before both upgrades: %v", err)
	}
	if v := got.Data["data"].(map[string]any)["v"]; v != "kept" {
		t.Errorf("the secret reads %v after the upgrades, want kept", v)
	}

	seen := jobPods.stop()
	kinds := map[string]bool{}
	for name, sc := range seen {
		switch {
		case strings.Contains(name, "-snapshot-"):
			kinds["snapshot"] = true
		case strings.Contains(name, "-stepdown-"):
			kinds["step-down"] = true
		}
		if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != sccFirstID || sc.FSGroup == nil || *sc.FSGroup != sccFirstID {
			t.Errorf("upgrade Job pod %s ran with %+v, want the namespace's first uid and gid %d", name, sc, sccFirstID)
		}
	}
	if !kinds["snapshot"] || !kinds["step-down"] {
		t.Errorf("upgrade Job pods seen: %v; want snapshot and step-down Jobs (both upgrades take a snapshot, the Rolling one steps the leader down)", keys(seen))
	}
	for _, p := range serverPods(t, c) {
		if p.Status.ContainerStatuses[0].RestartCount > 0 {
			t.Errorf("server %s restarted %d times under the assigned IDs", p.Name, p.Status.ContainerStatuses[0].RestartCount)
		}
	}
}

// checkAssignedIDs: the StatefulSet asks for no IDs and its pods run with the namespace's
// first uid and gid, which the platform assigned.
func checkAssignedIDs(t *testing.T, c *openbaov1alpha1.OpenBaoCluster) {
	t.Helper()
	psc := statefulSet(t, c).Spec.Template.Spec.SecurityContext
	if psc.RunAsUser != nil || psc.RunAsGroup != nil || psc.FSGroup != nil {
		t.Errorf("the StatefulSet's template asks for IDs on OpenShift: %+v", psc)
	}
	for _, p := range serverPods(t, c) {
		sc := p.Spec.SecurityContext
		if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != sccFirstID || sc.FSGroup == nil || *sc.FSGroup != sccFirstID {
			t.Errorf("pod %s runs with %+v, want runAsUser and fsGroup %d from the namespace's range", p.Name, sc, sccFirstID)
		}
	}
}

// checkDataOwnedByAssignedUser looks at each server's data volume on the node: OpenBao's
// storage files belong to the assigned user and to the fsGroup.
func checkDataOwnedByAssignedUser(t *testing.T, c *openbaov1alpha1.OpenBaoCluster) {
	t.Helper()
	ctx := context.Background()
	for _, p := range serverPods(t, c) {
		claim := "data-" + p.Name
		pvc, err := cs.CoreV1().PersistentVolumeClaims(c.Namespace).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("data volume of %s: %v", p.Name, err)
		}
		pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("volume %s: %v", pvc.Spec.VolumeName, err)
		}
		var dir string
		switch {
		case pv.Spec.HostPath != nil:
			dir = pv.Spec.HostPath.Path
		case pv.Spec.Local != nil:
			dir = pv.Spec.Local.Path
		default:
			t.Fatalf("volume %s is neither hostPath nor local", pv.Name)
		}
		files := 0
		for _, name := range []string{"vault.db", filepath.Join("raft", "raft.db")} {
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(dir, name), &st); err != nil {
				t.Errorf("%s of %s: %v", name, p.Name, err)
				continue
			}
			files++
			if int64(st.Uid) != sccFirstID || int64(st.Gid) != sccFirstID {
				t.Errorf("%s of %s is owned by %d:%d, want the assigned %d:%d", name, p.Name, st.Uid, st.Gid, sccFirstID, sccFirstID)
			}
		}
		if files == 0 {
			entries, _ := os.ReadDir(dir)
			t.Errorf("no OpenBao storage file in %s's volume %s (%d entries)", p.Name, dir, len(entries))
		}
	}
}

// jobPodWatch records the pod security context of every upgrade Job pod of a namespace.
type jobPodWatch struct {
	mu   sync.Mutex
	seen map[string]*corev1.PodSecurityContext
	done chan struct{}
	wg   sync.WaitGroup
}

func watchJobPods(t *testing.T, ns string) *jobPodWatch {
	w := &jobPodWatch{seen: map[string]*corev1.PodSecurityContext{}, done: make(chan struct{})}
	w.wg.Go(func() {
		for {
			pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: resources.LabelComponent + "=" + resources.ComponentJob})
			if err == nil {
				w.mu.Lock()
				for i := range pods.Items {
					w.seen[pods.Items[i].Name] = pods.Items[i].Spec.SecurityContext
				}
				w.mu.Unlock()
			}
			select {
			case <-w.done:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
	t.Cleanup(func() { w.stop() })
	return w
}

func (w *jobPodWatch) stop() map[string]*corev1.PodSecurityContext {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
