package envtest

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/controllers"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

const restoreSum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func newRestore(ns, name, cluster string, src openbaov1alpha1.RestoreSource) *openbaov1alpha1.OpenBaoRestore {
	return &openbaov1alpha1.OpenBaoRestore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       openbaov1alpha1.OpenBaoRestoreSpec{Cluster: openbaov1alpha1.RestoreClusterReference{Name: cluster}, Source: src},
	}
}

// TestRestoreSpecValidation: the API server refuses a bad OpenBaoRestore with the rule's own
// message, takes good ones, and refuses any change of the spec once created.
func TestRestoreSpecValidation(t *testing.T) {
	h := newHarness(t)
	s3 := &openbaov1alpha1.RestoreS3Source{Endpoint: "https://s3.example.com:9000", CredentialsSecret: "s3-creds"}
	bad := []struct {
		name string
		src  openbaov1alpha1.RestoreSource
		want string
	}{
		{"no source", openbaov1alpha1.RestoreSource{}, "source needs exactly one of backup"},
		{"both", openbaov1alpha1.RestoreSource{Backup: "latest", Location: "s3://b/k"}, "source needs exactly one of backup"},
		{"backup that is no location", openbaov1alpha1.RestoreSource{Backup: "yesterday"}, "backup must be latest or a location"},
		{"location without a scheme", openbaov1alpha1.RestoreSource{Location: "/snapshots/x.snap"}, "location must be s3://<bucket>/<key> or pvc://<claim>/<path"},
		{"location without a key", openbaov1alpha1.RestoreSource{Location: "s3://bucket/"}, "location must be s3://<bucket>/<key>"},
		{"location climbing out", openbaov1alpha1.RestoreSource{Location: "pvc://claim/../../etc/passwd"}, "location must not contain '..'"},
		{"s3 settings for a volume", openbaov1alpha1.RestoreSource{Location: "pvc://claim/x.snap", S3: s3}, "source.s3 only applies to a location of the form s3://"},
		{"s3 without credentials", openbaov1alpha1.RestoreSource{Location: "s3://b/k.snap", S3: &openbaov1alpha1.RestoreS3Source{Endpoint: "https://s3.example.com"}}, "s3.credentialsSecret is required"},
		{"s3 endpoint with a path", openbaov1alpha1.RestoreSource{Location: "s3://b/k.snap", S3: &openbaov1alpha1.RestoreS3Source{Endpoint: "https://s3.example.com/x", CredentialsSecret: "c"}}, "endpoint must be an http(s) URL without a path"},
		{"short checksum", openbaov1alpha1.RestoreSource{Backup: "latest", SHA256: "abc"}, "sha256 must be 64 lower-case hexadecimal digits"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := h.client.Create(t.Context(), newRestore(h.namespace, "bad", "bao", tc.src))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "some validation rules were not checked", "one clear message")
		})
	}
	err := h.client.Create(t.Context(), newRestore(h.namespace, "bad", "Bao_1", openbaov1alpha1.RestoreSource{Backup: "latest"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cluster.name must be the name of an OpenBaoCluster")

	good := []openbaov1alpha1.RestoreSource{
		{Backup: "latest"},
		{Backup: "s3://b/openbao/ns/bao/bao-20261130T060000Z.snap", SHA256: restoreSum},
		{Location: "pvc://bao-snapshots/backups/bao-20261130T060000Z.snap"},
		{Location: "s3://backups/other/bao-20261130T060000Z.snap", S3: s3, SHA256: restoreSum},
	}
	for i, src := range good {
		r := newRestore(h.namespace, "good-"+string(rune('a'+i)), "bao", src)
		require.NoError(t, h.client.Create(t.Context(), r), "source %+v", src)
	}

	r := &openbaov1alpha1.OpenBaoRestore{}
	require.NoError(t, h.get("good-a", r))
	r.Spec.Force = true
	err = h.client.Update(t.Context(), r)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "an OpenBaoRestore cannot be changed once created")
}

// TestSealKeyFromAnExistingSecret: a new cluster naming another cluster's seal-key Secret
// runs with that key; a missing or malformed one stops the cluster before anything is
// created, with a condition and an event; the field cannot be changed later.
func TestSealKeyFromAnExistingSecret(t *testing.T) {
	h := newHarness(t)
	h.withEvents()
	key := bytes.Repeat([]byte{7}, 32)

	c := newCluster(h.namespace, "new")
	c.Spec.Seal = &openbaov1alpha1.SealSpec{ExistingSecret: "old-unseal-key"}
	require.NoError(t, h.client.Create(t.Context(), c))
	_, err := h.reconcile("new")
	require.NoError(t, err)
	h.requireDegraded("new", openbaov1alpha1.ReasonInvalidSpec, `spec.seal.existingSecret "old-unseal-key" does not exist`)
	assert.Error(t, h.get("new", &appsv1.StatefulSet{}), "no servers without their seal key")
	assert.Error(t, h.get("new-unseal-key", &corev1.Secret{}), "no key generated instead")
	h.events("new", openbaov1alpha1.ReasonInvalidSpec, 1)

	old := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.namespace, Name: "old-unseal-key"}, Data: map[string][]byte{"key": key[:16]}}
	require.NoError(t, h.client.Create(t.Context(), old))
	_, err = h.reconcile("new")
	require.NoError(t, err)
	h.requireDegraded("new", openbaov1alpha1.ReasonInvalidSpec, "must hold a 32-byte seal key under the key \"key\" (it holds 16 bytes there)")
	assert.Error(t, h.get("new-unseal-key", &corev1.Secret{}))

	old.Data["key"] = key
	require.NoError(t, h.client.Update(t.Context(), old))
	h.converge("new")
	seal := &corev1.Secret{}
	require.NoError(t, h.get("new-unseal-key", seal))
	assert.Equal(t, key, seal.Data["key"], "the cluster runs with the named key")
	assert.True(t, *seal.Immutable)
	assert.True(t, meta.IsStatusConditionFalse(h.cluster("new").Status.Conditions, openbaov1alpha1.ConditionDegraded))
	require.NoError(t, h.get("new", &appsv1.StatefulSet{}))

	c = h.cluster("new")
	c.Spec.Seal.ExistingSecret = "another"
	err = h.client.Update(t.Context(), c)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "seal.existingSecret cannot be changed")

	// A cluster that has its own key and is later given another one keeps its own.
	require.NoError(t, h.client.Create(t.Context(), newCluster(h.namespace, "own")))
	h.converge("own")
	c = h.cluster("own")
	c.Spec.Seal = &openbaov1alpha1.SealSpec{ExistingSecret: "old-unseal-key"}
	require.NoError(t, h.client.Update(t.Context(), c))
	_, err = h.reconcile("own")
	require.NoError(t, err)
	h.requireDegraded("own", openbaov1alpha1.ReasonInvalidSpec, "holds another key than the cluster's own seal key own-unseal-key")
	require.NoError(t, h.get("own-unseal-key", seal))
	assert.NotEqual(t, key, seal.Data["key"])
}

// restoreHarness drives the restore reconciler, one pass at a time.
type restoreHarness struct {
	*harness
	restores *controllers.OpenBaoRestoreReconciler
}

func newRestoreHarness(t *testing.T) *restoreHarness {
	h := newHarness(t)
	h.withEvents()
	rec, stop := controllers.NewEventRecorder(kubernetes.NewForConfigOrDie(restConfig), scheme)
	t.Cleanup(stop)
	return &restoreHarness{harness: h, restores: &controllers.OpenBaoRestoreReconciler{
		Client: h.client, Scheme: scheme, Clock: clock.RealClock{}, Recorder: rec,
		Options: controllers.Options{OperatorImage: "quay.io/openbao-operator/openbao-operator:test"},
	}}
}

func (h *restoreHarness) reconcileRestore(name string) {
	h.t.Helper()
	_, err := h.restores.Reconcile(h.t.Context(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: h.namespace, Name: name}})
	require.NoError(h.t, err)
}

func (h *restoreHarness) restore(name string) *openbaov1alpha1.OpenBaoRestore {
	h.t.Helper()
	r := &openbaov1alpha1.OpenBaoRestore{}
	require.NoError(h.t, h.get(name, r))
	return r
}

// restoreEvents waits until the restore's events with reason number want.
func (h *restoreHarness) restoreEvents(name, reason string, want int) []corev1.Event {
	h.t.Helper()
	var found []corev1.Event
	require.Eventually(h.t, func() bool {
		list := &corev1.EventList{}
		require.NoError(h.t, h.client.List(h.t.Context(), list, client.InNamespace(h.namespace)))
		found = nil
		for _, e := range list.Items {
			if e.InvolvedObject.Name == name && e.InvolvedObject.Kind == "OpenBaoRestore" && e.Reason == reason {
				found = append(found, e)
			}
		}
		return len(found) == want
	}, 10*time.Second, 100*time.Millisecond, "events %s of %s", reason, name)
	return found
}

// servingCluster is a converged cluster whose status says what the servers would (there
// are no servers in envtest): initialized, an active node, a recorded backup.
func (h *restoreHarness) servingCluster(name string) *openbaov1alpha1.OpenBaoCluster {
	h.t.Helper()
	require.NoError(h.t, h.client.Create(h.t.Context(), newCluster(h.namespace, name)))
	h.converge(name)
	c := h.cluster(name)
	before := c.DeepCopy()
	c.Status.Initialized, c.Status.Leader = true, name+"-0"
	c.Status.Backup = &openbaov1alpha1.BackupStatus{LastSuccessful: &openbaov1alpha1.BackupRecord{
		JobName: name + "-backup-1", Trigger: openbaov1alpha1.BackupOnDemand, ScheduledTime: metav1.Now(),
		Location: "pvc://" + name + "-snapshots/backups/" + name + "-20261130T060000Z.snap", SHA256: restoreSum,
	}}
	require.NoError(h.t, h.client.Status().Patch(h.t.Context(), c, client.MergeFrom(before)))
	return c
}

func assertRefused(t *testing.T, h *restoreHarness, name, reason, msg string) {
	t.Helper()
	r := h.restore(name)
	assert.Equal(t, openbaov1alpha1.RestoreRefused, r.Status.Phase)
	cond := meta.FindStatusCondition(r.Status.Conditions, openbaov1alpha1.ConditionRestored)
	require.NotNil(t, cond)
	assert.Equal(t, metav1.ConditionFalse, cond.Status)
	assert.Equal(t, reason, cond.Reason)
	assert.Contains(t, cond.Message, msg)
	assert.Contains(t, cond.Message, "Nothing was changed")
	assert.Empty(t, r.Finalizers)
	events := h.restoreEvents(name, "RestoreRefused", 1)
	assert.Equal(t, corev1.EventTypeWarning, events[0].Type)
	jobs := &batchv1.JobList{}
	require.NoError(t, h.client.List(t.Context(), jobs, client.InNamespace(h.namespace), client.MatchingLabels{resources.LabelRestoreName: name}))
	assert.Empty(t, jobs.Items, "no Job of this restore")
}

// TestRestoreRefusals: a restore of a missing cluster, of a cluster that is not initialized,
// during an upgrade or of an unknown backup is refused with its reason and a Warning event,
// and nothing is changed (no lock, no Job).
func TestRestoreRefusals(t *testing.T) {
	h := newRestoreHarness(t)

	require.NoError(t, h.client.Create(t.Context(), newRestore(h.namespace, "nocluster", "missing", openbaov1alpha1.RestoreSource{Backup: "latest"})))
	h.reconcileRestore("nocluster")
	assertRefused(t, h, "nocluster", openbaov1alpha1.ReasonRestoreClusterNotFound, "The OpenBaoCluster missing does not exist")

	require.NoError(t, h.client.Create(t.Context(), newCluster(h.namespace, "young")))
	h.converge("young")
	require.NoError(t, h.client.Create(t.Context(), newRestore(h.namespace, "early", "young", openbaov1alpha1.RestoreSource{Backup: "latest"})))
	h.reconcileRestore("early")
	assertRefused(t, h, "early", openbaov1alpha1.ReasonRestoreClusterNotReady, "is not initialized yet")

	c := h.servingCluster("bao")
	require.NoError(t, h.client.Create(t.Context(), newRestore(h.namespace, "older", "bao", openbaov1alpha1.RestoreSource{Backup: "pvc://bao-snapshots/backups/bao-20261129T060000Z.snap"})))
	h.reconcileRestore("older")
	assertRefused(t, h, "older", openbaov1alpha1.ReasonRestoreUnknownSource, "is not the backup the cluster bao records")

	before := c.DeepCopy()
	c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{FromVersion: "2.6.2", ToVersion: "2.7.2", Strategy: openbaov1alpha1.RollingUpgrade}
	require.NoError(t, h.client.Status().Patch(t.Context(), c, client.MergeFrom(before)))
	require.NoError(t, h.client.Create(t.Context(), newRestore(h.namespace, "midupgrade", "bao", openbaov1alpha1.RestoreSource{Backup: "latest"})))
	h.reconcileRestore("midupgrade")
	assertRefused(t, h, "midupgrade", openbaov1alpha1.ReasonRestoreUpgradeInProgress, "from 2.6.2 to 2.7.2 is in flight")
	assert.Nil(t, h.cluster("bao").Status.Restore, "no lock taken")
}

// TestRestoreLock: a restore takes the cluster's operation lock before its Job exists; a
// second restore is refused; an upgrade does not start while the lock is held; deleting
// the restore releases it.
func TestRestoreLock(t *testing.T) {
	h := newRestoreHarness(t)
	h.servingCluster("bao")
	require.NoError(t, h.client.Create(t.Context(), newRestore(h.namespace, "first", "bao", openbaov1alpha1.RestoreSource{Backup: "latest"})))

	h.reconcileRestore("first")
	r := h.restore("first")
	assert.Equal(t, openbaov1alpha1.RestoreValidating, r.Status.Phase)
	lock := h.cluster("bao").Status.Restore
	require.NotNil(t, lock, "the lock is written first")
	assert.Equal(t, "first", lock.Name)
	assert.Equal(t, string(r.UID), lock.UID)
	assert.Equal(t, "pvc://bao-snapshots/backups/bao-20261130T060000Z.snap", r.Status.Location)
	assert.Equal(t, restoreSum, r.Status.ExpectedSHA256)
	assert.Contains(t, r.Finalizers, "openbao.org/restore-lock")
	job := &batchv1.Job{}
	assert.True(t, apierrors.IsNotFound(h.get(r.Status.JobName, job)), "no Job before the lock is recorded")
	h.restoreEvents("first", "RestoreStarted", 1)

	h.reconcileRestore("first")
	r = h.restore("first")
	assert.Equal(t, openbaov1alpha1.RestoreRestoring, r.Status.Phase)
	require.NoError(t, h.get(r.Status.JobName, job))
	assert.Equal(t, resources.RestoreJobName(h.cluster("bao"), r), job.Name)
	assert.True(t, metav1.IsControlledBy(job, r), "owned by the restore")
	args := job.Spec.Template.Spec.Containers[0].Args
	assert.Contains(t, args, "--source")
	assert.Contains(t, args, "pvc://bao-snapshots/backups/bao-20261130T060000Z.snap")
	assert.Contains(t, args, "https://bao-0.bao-internal."+h.namespace+".svc:8200")
	h.reconcileRestore("first") // the Job runs: nothing more
	assert.Equal(t, openbaov1alpha1.RestoreRestoring, h.restore("first").Status.Phase)

	require.NoError(t, h.client.Create(t.Context(), newRestore(h.namespace, "second", "bao", openbaov1alpha1.RestoreSource{Backup: "latest"})))
	h.reconcileRestore("second")
	assertRefused(t, h, "second", openbaov1alpha1.ReasonRestoreAnotherRestore, "The OpenBaoRestore first is restoring the cluster bao")

	// An upgrade waits for the restore: its first pre-check says why.
	c := h.cluster("bao")
	c.Spec.Version = "2.7.2"
	require.NoError(t, h.client.Update(t.Context(), c))
	_, err := h.reconcile("bao")
	require.NoError(t, err)
	c = h.cluster("bao")
	assert.Nil(t, c.Status.Upgrade, "no upgrade started")
	cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading)
	require.NotNil(t, cond)
	assert.Equal(t, metav1.ConditionFalse, cond.Status)
	assert.Contains(t, cond.Message, "pre-check NoRestoreRunning: the OpenBaoRestore first is restoring a snapshot into the cluster")
	require.NotNil(t, c.Status.Restore, "the cluster's own pass keeps the lock")

	require.NoError(t, h.client.Delete(t.Context(), h.restore("first")))
	h.reconcileRestore("first")
	assert.Nil(t, h.cluster("bao").Status.Restore, "deleting the restore releases the lock")
	assert.True(t, apierrors.IsNotFound(h.get("first", &openbaov1alpha1.OpenBaoRestore{})), "the finalizer is removed")
}
