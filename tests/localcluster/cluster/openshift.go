package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/openbao-operator/openbao-operator/tests/localcluster/openshift"
)

// sccProbeRange is the uid range of the namespace EnableOpenShiftSCC checks the policies in.
const sccProbeRange = "1000650000/10000"

// EnableOpenShiftSCC makes the cluster look like OpenShift to the operator and to pods:
// security.openshift.io/v1 in discovery and restricted-v2's ID rules in namespaces with
// openshift.io/sa.scc.uid-range (see package openshift). It returns once discovery lists
// the group and both policies act on a trial pod (a dry run in a namespace of its own). An
// operator started before keeps its decision: restart it (RestartOperator).
func (c *Cluster) EnableOpenShiftSCC(ctx context.Context) error {
	if err := c.applyManifest(ctx, "apply", "openshift-scc-crd.yaml", openshift.CRDManifest); err != nil {
		return err
	}
	if err := c.applyManifest(ctx, "apply", "openshift-scc-admission.yaml", openshift.AdmissionManifest); err != nil {
		return err
	}
	if err := c.poll(ctx, "discovery to list "+openshift.SecurityGroup, time.Minute, func(context.Context) (bool, string, error) {
		listed, err := c.discoveryLists(openshift.SecurityGroup)
		if err != nil {
			return false, err.Error(), nil
		}
		return listed, "not listed yet", nil
	}); err != nil {
		return err
	}
	return c.checkSCCPolicies(ctx)
}

// DisableOpenShiftSCC removes what EnableOpenShiftSCC installed and waits until discovery
// no longer lists the group.
func (c *Cluster) DisableOpenShiftSCC(ctx context.Context) error {
	var errs []error
	for _, m := range []struct {
		file string
		data []byte
	}{{"openshift-scc-admission.yaml", openshift.AdmissionManifest}, {"openshift-scc-crd.yaml", openshift.CRDManifest}} {
		if err := c.applyManifest(ctx, "delete", m.file, m.data, "--ignore-not-found", "--wait=true"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.poll(ctx, "discovery to drop "+openshift.SecurityGroup, time.Minute, func(context.Context) (bool, string, error) {
		listed, err := c.discoveryLists(openshift.SecurityGroup)
		if err != nil {
			return false, err.Error(), nil
		}
		return !listed, "still listed", nil
	})
}

// discoveryLists says whether the API server's discovery lists the API group.
func (c *Cluster) discoveryLists(group string) (bool, error) {
	groups, err := c.cs.Discovery().ServerGroups()
	if err != nil {
		return false, err
	}
	for _, g := range groups.Groups {
		if g.Name == group {
			return true, nil
		}
	}
	return false, nil
}

func (c *Cluster) applyManifest(ctx context.Context, verb, name string, data []byte, extra ...string) error {
	file := filepath.Join(c.opts.Dir, name)
	if err := os.WriteFile(file, data, 0o644); err != nil {
		return err
	}
	args := []string{verb, "-f", file}
	if verb == "apply" {
		args = append(args, "--server-side")
	}
	out, err := c.Kubectl(ctx, append(args, extra...)...)
	if err != nil {
		return fmt.Errorf("kubectl %s -f %s: %w\n%s", verb, name, err, out)
	}
	return nil
}

// checkSCCPolicies waits until, in a namespace with a uid range, a pod without IDs gets the
// first uid and gid of the range and a pod with runAsUser outside the range is rejected.
// Admission policies take effect a moment after they are created.
func (c *Cluster) checkSCCPolicies(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "scc-probe-",
		Annotations:  map[string]string{openshift.UIDRangeAnnotation: sccProbeRange, openshift.SupplementalGroupsAnnotation: sccProbeRange},
	}}
	ns, err := c.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create the SCC probe namespace: %w", err)
	}
	defer func() {
		_ = c.cs.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	}()
	first := int64(1000650000)
	probe := func(user *int64) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns.Name},
			Spec: corev1.PodSpec{
				SecurityContext: &corev1.PodSecurityContext{RunAsUser: user, RunAsNonRoot: ptr.To(true)},
				Containers:      []corev1.Container{{Name: "c", Image: "probe"}},
			},
		}
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	return c.poll(ctx, "the SCC admission policies to act", time.Minute, func(ctx context.Context) (bool, string, error) {
		if _, err := c.cs.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return false, "no default service account yet", nil
		}
		got, err := c.cs.CoreV1().Pods(ns.Name).Create(ctx, probe(nil), dryRun)
		if err != nil {
			return false, fmt.Sprintf("a pod without IDs: %v", err), nil
		}
		sc := got.Spec.SecurityContext
		if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != first || sc.FSGroup == nil || *sc.FSGroup != first {
			return false, fmt.Sprintf("a pod without IDs was admitted with %+v, want runAsUser and fsGroup %d", sc, first), nil
		}
		_, err = c.cs.CoreV1().Pods(ns.Name).Create(ctx, probe(ptr.To[int64](100)), dryRun)
		switch {
		case err == nil:
			return false, "a pod with runAsUser 100 was admitted", nil
		case apierrors.IsInvalid(err) || apierrors.IsForbidden(err):
			if strings.Contains(err.Error(), "security context constraint") {
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("a pod with runAsUser 100: %v", err), nil
	})
}

// RestartOperator deletes the operator's pod and waits until a new one is ready: an
// operator reads its platform settings (discovery, WATCH_NAMESPACE) when it starts.
func (c *Cluster) RestartOperator(ctx context.Context) error {
	pods, err := c.cs.CoreV1().Pods(OperatorNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	old := map[string]bool{}
	for _, p := range pods.Items {
		old[string(p.UID)] = true
		if err := c.cs.CoreV1().Pods(OperatorNamespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return c.waitOperatorReplaced(ctx, old)
}

// waitOperatorReplaced waits until the operator Deployment is rolled out and its ready pod
// is none of old (pod UIDs).
func (c *Cluster) waitOperatorReplaced(ctx context.Context, old map[string]bool) error {
	return c.poll(ctx, "a new operator pod Ready", defaultWait, func(ctx context.Context) (bool, string, error) {
		d, err := c.cs.AppsV1().Deployments(OperatorNamespace).Get(ctx, OperatorDeployment, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != *d.Spec.Replicas || d.Status.Replicas != *d.Spec.Replicas {
			return false, "rollout in progress", nil
		}
		pods, err := c.cs.CoreV1().Pods(OperatorNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		ready := 0
		for i := range pods.Items {
			p := &pods.Items[i]
			if old[string(p.UID)] {
				return false, "old pod " + p.Name + " still there", nil
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
					ready++
				}
			}
		}
		return ready == 1, c.describeOperatorPods(ctx), nil
	})
}

// SetOperatorTargetNamespaces sets the olm.targetNamespaces annotation of the operator's
// pod template, as OLM does for an OperatorGroup with target namespaces (empty removes it:
// all namespaces), and waits for the new operator pod. The manager reads it through the
// downward API (WATCH_NAMESPACE).
func (c *Cluster) SetOperatorTargetNamespaces(ctx context.Context, namespaces string) error {
	d, err := c.cs.AppsV1().Deployments(OperatorNamespace).Get(ctx, OperatorDeployment, metav1.GetOptions{})
	if err != nil {
		return err
	}
	pods, err := c.cs.CoreV1().Pods(OperatorNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	old := map[string]bool{}
	for _, p := range pods.Items {
		old[string(p.UID)] = true
	}
	if d.Spec.Template.Annotations == nil {
		d.Spec.Template.Annotations = map[string]string{}
	}
	if namespaces == "" {
		delete(d.Spec.Template.Annotations, "olm.targetNamespaces")
	} else {
		d.Spec.Template.Annotations["olm.targetNamespaces"] = namespaces
	}
	if _, err := c.cs.AppsV1().Deployments(OperatorNamespace).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set olm.targetNamespaces=%q on the operator Deployment: %w", namespaces, err)
	}
	return c.waitOperatorReplaced(ctx, old)
}
