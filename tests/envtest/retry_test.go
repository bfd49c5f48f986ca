package envtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/controllers"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// withEvents gives the harness' reconciler the operator's own event recorder, writing to the
// real API server.
func (h *harness) withEvents() {
	rec, stop := controllers.NewEventRecorder(kubernetes.NewForConfigOrDie(restConfig), scheme)
	h.t.Cleanup(stop)
	h.reconciler.Recorder = rec
}

// events waits until the cluster's events with reason number want, and returns them.
func (h *harness) events(name, reason string, want int) []corev1.Event {
	h.t.Helper()
	var found []corev1.Event
	require.Eventually(h.t, func() bool {
		list := &corev1.EventList{}
		require.NoError(h.t, h.client.List(h.t.Context(), list, client.InNamespace(h.namespace)))
		found = nil
		for _, e := range list.Items {
			if e.InvolvedObject.Name == name && e.InvolvedObject.Kind == "OpenBaoCluster" && e.Reason == reason {
				found = append(found, e)
			}
		}
		return len(found) == want
	}, 10*time.Second, 100*time.Millisecond, "events %s of %s", reason, name)
	return found
}

// A halted upgrade is retried on the same target by a new spec.upgrade.retryToken, once per
// value; the operator's events carry the timestamps `kubectl get events --sort-by` uses.
func TestHaltedUpgradeRetriedByRetryToken(t *testing.T) {
	h := newHarness(t)
	h.withEvents()
	c := newCluster(h.namespace, "bao")
	require.NoError(t, h.client.Create(t.Context(), c))
	h.converge("bao")

	// An upgrade to 2.7.2 whose step has run out of time: the StatefulSet controller (absent
	// from envtest) never observes the new template.
	c = h.cluster("bao")
	c.Spec.Version = "2.7.2"
	require.NoError(t, h.client.Update(t.Context(), c))
	c = h.cluster("bao")
	before := c.DeepCopy()
	start := metav1.NewTime(time.Now().Add(-11 * time.Minute))
	deadline := metav1.NewTime(time.Now().Add(-time.Minute))
	c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{
		FromVersion: "2.6.2", FromImage: "quay.io/openbao/openbao:2.6.2",
		ToVersion: "2.7.2", ToImage: "quay.io/openbao/openbao:2.7.2",
		Strategy: openbaov1alpha1.RollingUpgrade, Revision: "r1", Step: "WaitTemplate",
		StartTime: &start, StepStartTime: &start, StepDeadline: &deadline,
	}
	require.NoError(t, h.client.Status().Patch(t.Context(), c, client.MergeFrom(before)))

	_, err := h.reconcile("bao")
	require.NoError(t, err)
	c = h.cluster("bao")
	require.NotNil(t, c.Status.Upgrade)
	require.Equal(t, upgrade.StepHalted, c.Status.Upgrade.Step)
	degraded := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionDegraded)
	require.Equal(t, openbaov1alpha1.ReasonUpgradeFailed, degraded.Reason)
	assert.Contains(t, degraded.Message, "spec.upgrade.retryToken")
	halted := h.events("bao", "UpgradeHalted", 1)[0]

	// Still halted on the next pass: nothing moves by itself.
	_, err = h.reconcile("bao")
	require.NoError(t, err)
	require.Equal(t, upgrade.StepHalted, h.cluster("bao").Status.Upgrade.Step)

	// The user retries from the console form: a new value in spec.upgrade.retryToken.
	c = h.cluster("bao")
	c.Spec.Upgrade.RetryToken = "2026-11-30T17:00"
	require.NoError(t, h.client.Update(t.Context(), c))
	_, err = h.reconcile("bao")
	require.NoError(t, err)
	c = h.cluster("bao")
	u := c.Status.Upgrade
	require.NotNil(t, u)
	assert.Equal(t, "WaitTemplate", u.Step, "the failed step runs again")
	assert.Equal(t, "r1", u.Revision, "on the same target")
	assert.Empty(t, u.LastError)
	require.NotNil(t, u.StepDeadline)
	assert.True(t, u.StepDeadline.After(time.Now().Add(9*time.Minute)), "with a fresh deadline: %s", u.StepDeadline)
	assert.Equal(t, "2026-11-30T17:00", c.Status.ObservedRetryToken)
	assert.True(t, meta.IsStatusConditionFalse(c.Status.Conditions, openbaov1alpha1.ConditionDegraded))
	assert.Equal(t, openbaov1alpha1.ReasonUpgradeRunning, meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading).Reason)
	retried := h.events("bao", "UpgradeRetried", 1)[0]
	assert.Contains(t, retried.Message, "2026-11-30T17:00")

	// Acted on once: more passes do not retry again.
	_, err = h.reconcile("bao")
	require.NoError(t, err)
	time.Sleep(time.Second) // an extra event would have reached the API server by now
	again := h.events("bao", "UpgradeRetried", 1)[0]
	assert.Equal(t, int32(1), again.Count)

	// Events sort by time: the core/v1 Event has its timestamps set.
	for _, e := range []corev1.Event{halted, retried} {
		assert.False(t, e.LastTimestamp.IsZero(), "%s has lastTimestamp", e.Reason)
		assert.False(t, e.FirstTimestamp.IsZero(), "%s has firstTimestamp", e.Reason)
		assert.Equal(t, controllers.EventComponent, e.Source.Component)
	}
	assert.False(t, retried.LastTimestamp.Before(&halted.LastTimestamp), "the retry sorts after the halt")
}
