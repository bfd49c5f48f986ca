package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OpenBaoRestoreSpec says which snapshot is restored into which cluster. It cannot be
// changed once created: create another OpenBaoRestore for another attempt.
type OpenBaoRestoreSpec struct {
	// Cluster is the OpenBaoCluster, in the same namespace, whose data is replaced by the
	// snapshot.
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Cluster"
	Cluster RestoreClusterReference `json:"cluster"`

	// Source is the snapshot: a backup the cluster recorded (spec.source.backup) or any
	// snapshot on a volume or in a bucket (spec.source.location).
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Snapshot"
	Source RestoreSource `json:"source"`

	// Force restores a snapshot taken of another cluster (a new cluster given the old one's
	// seal key, after a rollback or a disaster). Without it OpenBao refuses such a snapshot.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Force (snapshot of another cluster)",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:booleanSwitch"}
	Force bool `json:"force,omitempty"`
}

// RestoreClusterReference names an OpenBaoCluster in the restore's namespace.
type RestoreClusterReference struct {
	// Name of the OpenBaoCluster.
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="cluster.name must be the name of an OpenBaoCluster in this namespace (lower-case letters, digits and '-')"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="OpenBaoCluster name",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Name string `json:"name"`
}

// RestoreSource is one snapshot: exactly one of backup or location.
// +kubebuilder:validation:XValidation:rule="has(self.backup) != has(self.location)",message="source needs exactly one of backup (latest, or a location from the cluster's status.backup) or location (s3://bucket/key or pvc://claim/path)"
// +kubebuilder:validation:XValidation:rule="!has(self.s3) || (has(self.location) && self.location.startsWith('s3://'))",message="source.s3 only applies to a location of the form s3://bucket/key"
type RestoreSource struct {
	// Backup is "latest" (the cluster's status.backup.lastSuccessful) or the location of a
	// backup as the cluster's status.backup records it. Its checksum is the recorded one,
	// and an S3 backup is read with the cluster's spec.backup.target.s3 settings.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self == 'latest' || self.startsWith('s3://') || self.startsWith('pvc://')",message="backup must be latest or a location from the cluster's status.backup (s3://... or pvc://...)"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Backup (latest, or a location from the cluster's status)",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Backup string `json:"backup,omitempty"`

	// Location is a snapshot anywhere: s3://<bucket>/<key> (read with spec.source.s3, or
	// else the cluster's spec.backup.target.s3 settings) or pvc://<claim>/<path> (a
	// PersistentVolumeClaim in this namespace, mounted read-only).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.matches('^s3://[a-z0-9][a-z0-9.-]*[a-z0-9]/[^\\\\s]+$') || self.matches('^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[^\\\\s]+$')",message="location must be s3://<bucket>/<key> or pvc://<claim>/<path inside the volume>"
	// +kubebuilder:validation:XValidation:rule="!self.contains('/../') && !self.endsWith('/..')",message="location must not contain '..'"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Location (s3://bucket/key or pvc://claim/path)",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Location string `json:"location,omitempty"`

	// S3 is how to reach the bucket of an s3:// location when it is not the cluster's
	// backup target (a bucket of another cluster, another endpoint or other credentials).
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="S3 settings",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:advanced"}
	S3 *RestoreS3Source `json:"s3,omitempty"`

	// SHA256 is the snapshot's expected checksum (hex). The restore is refused, with
	// nothing changed, when the snapshot does not match it. For a backup the recorded
	// checksum is used when this is empty.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9a-f]{64}$')",message="sha256 must be 64 lower-case hexadecimal digits"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Expected SHA-256",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	SHA256 string `json:"sha256,omitempty"`
}

// RestoreS3Source is the object storage a snapshot is read from; the bucket is the
// location's.
// +kubebuilder:validation:XValidation:rule="has(self.credentialsSecret) && size(self.credentialsSecret) > 0",message="s3.credentialsSecret is required: a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in this namespace"
type RestoreS3Source struct {
	// Endpoint is the URL of the S3 API, such as https://minio.storage.svc:9000.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^/\\\\s]+/?$')",message="endpoint must be an http(s) URL without a path, such as https://s3.example.com:9000"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Endpoint",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Endpoint string `json:"endpoint"`
	// Region of the bucket; us-east-1 when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Region",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Region string `json:"region,omitempty"`
	// PathStyle addresses the bucket as <endpoint>/<bucket>.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Path-style addressing",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:booleanSwitch"}
	PathStyle bool `json:"pathStyle,omitempty"`
	// CredentialsSecret names a Secret in this namespace with AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY, allowed to read the object and its tags.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Credentials Secret",xDescriptors={"urn:alm:descriptor:io.kubernetes:Secret"}
	CredentialsSecret string `json:"credentialsSecret,omitempty"`
	// CABundle is the CA certificate (PEM) of the endpoint, when the system's CAs do not
	// sign it.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="CA bundle",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:advanced"}
	CABundle *CABundleSource `json:"caBundle,omitempty"`
}

// S3Target is the source's S3 settings in the form a backup's target has them; the bucket
// is left to the location.
func (s *RestoreS3Source) S3Target() *S3Target {
	if s == nil {
		return nil
	}
	return &S3Target{Endpoint: s.Endpoint, Region: s.Region, PathStyle: s.PathStyle, CredentialsSecret: s.CredentialsSecret, CABundle: s.CABundle}
}

// RestorePhase is where a restore stands.
// +kubebuilder:validation:Enum=Pending;Validating;Restoring;Restarting;Verifying;Succeeded;Failed;Refused
type RestorePhase string

const (
	// RestorePending: accepted, waiting for its turn (a paused cluster, a backup in flight).
	RestorePending RestorePhase = "Pending"
	// RestoreValidating: the operator checks the cluster and the source and takes the
	// cluster's operation lock (status.restore on the OpenBaoCluster).
	RestoreValidating RestorePhase = "Validating"
	// RestoreRestoring: the restore Job runs: it checks the snapshot's checksum and that the
	// cluster's seal key decrypts it, then installs it through the active node.
	RestoreRestoring RestorePhase = "Restoring"
	// RestoreRestarting: every server is restarted, one at a time, the active one last, so
	// that none serves the state it held in memory before the restore.
	RestoreRestarting RestorePhase = "Restarting"
	// RestoreVerifying: every server must be unsealed, ready, a Raft voter and caught up.
	RestoreVerifying RestorePhase = "Verifying"
	// RestoreSucceeded: every server serves the snapshot's data.
	RestoreSucceeded RestorePhase = "Succeeded"
	// RestoreFailed: the restore did not finish; the message says what was done and what to
	// check.
	RestoreFailed RestorePhase = "Failed"
	// RestoreRefused: the restore was refused and nothing was changed; the Restored
	// condition's reason says why.
	RestoreRefused RestorePhase = "Refused"
)

// Done is true for the phases a restore never leaves.
func (p RestorePhase) Done() bool {
	return p == RestoreSucceeded || p == RestoreFailed || p == RestoreRefused
}

// ConditionRestored is an OpenBaoRestore's condition: True once every server serves the
// snapshot, False meanwhile (reason RestoreInProgress or RestoreWaiting) and after a
// refusal (the reason says why) or a failure (RestoreFailed).
const ConditionRestored = "Restored"

// Reasons of the Restored condition.
const (
	ReasonRestoreInProgress = "RestoreInProgress"
	// ReasonRestoreWaiting: the cluster is paused or a backup is in flight; the restore
	// starts by itself afterwards.
	ReasonRestoreWaiting   = "RestoreWaiting"
	ReasonRestoreSucceeded = "RestoreSucceeded"
	ReasonRestoreFailed    = "RestoreFailed"

	// Refusals: nothing was changed.
	ReasonRestoreUpgradeInProgress   = "UpgradeInProgress"
	ReasonRestoreAnotherRestore      = "AnotherRestoreInProgress"
	ReasonRestoreScaleDownInProgress = "ScaleDownInProgress"
	ReasonRestoreClusterNotFound     = "ClusterNotFound"
	ReasonRestoreClusterNotReady     = "ClusterNotInitialized"
	ReasonRestoreUnknownSource       = "UnknownSource"
	// Refusals reported by the restore Job, which checks before it changes anything. The
	// condition carries the Job's reason word for word; these are the most common (the
	// executor also reports InvalidRequest, NoChecksum, CorruptSnapshot, SourceUnreadable,
	// LoginFailed, SnapshotChanged and RefusedByOpenBao).
	ReasonRestoreChecksumMismatch   = "ChecksumMismatch"
	ReasonRestoreSealKeyMismatch    = "SealKeyMismatch"
	ReasonRestoreIncompleteSnapshot = "IncompleteSnapshot"
	ReasonRestoreNotFound           = "NotFound"
)

// OpenBaoRestoreStatus is the progress of a restore; a restarted operator resumes from it.
type OpenBaoRestoreStatus struct {
	// Phase is Pending, Validating, Restoring, Restarting, Verifying, Succeeded, Failed or
	// Refused.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Phase",xDescriptors={"urn:alm:descriptor:io.kubernetes.phase"}
	Phase RestorePhase `json:"phase,omitempty"`
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Restored.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Conditions",xDescriptors={"urn:alm:descriptor:io.kubernetes.conditions"}
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// JobName is the restore Job.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Restore Job",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	JobName string `json:"jobName,omitempty"`
	// Location is the snapshot restored (spec.source.backup resolved).
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Location",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Location string `json:"location,omitempty"`
	// Endpoint is the S3 endpoint of an s3:// location.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// ExpectedSHA256 is the checksum the snapshot must have (spec.source.sha256 or the
	// backup's recorded one).
	// +optional
	ExpectedSHA256 string `json:"expectedSHA256,omitempty"`
	// Size of the restored snapshot in bytes, as the restore Job read it.
	// +optional
	Size int64 `json:"size,omitempty"`
	// SHA256 of the restored snapshot, as the restore Job read it.
	// +optional
	SHA256 string `json:"sha256,omitempty"`
	// Forced is true when the snapshot was installed with force (a snapshot of another
	// cluster).
	// +optional
	Forced bool `json:"forced,omitempty"`
	// StartTime is when the cluster's operation lock was taken.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// CompletionTime is when the restore succeeded, failed or was refused.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// RestartedPods are the servers restarted after the snapshot was installed, in order.
	// +optional
	// +listType=atomic
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Restarted servers"
	RestartedPods []string `json:"restartedPods,omitempty"`
	// CurrentPod is the server being restarted, recorded before it is stepped down or
	// deleted.
	// +optional
	CurrentPod string `json:"currentPod,omitempty"`
	// CurrentPodUID is the UID of CurrentPod's pod when it was deleted: a pod of that name
	// with another UID is its replacement.
	// +optional
	CurrentPodUID string `json:"currentPodUID,omitempty"`
	// StepDownJob is the Job that moves leadership away from CurrentPod, when it is the
	// active node.
	// +optional
	StepDownJob string `json:"stepDownJob,omitempty"`
	// CatchUpIndex is the active node's committed Raft index that the server being waited
	// for (Restarting) or every server (Verifying) must have applied.
	// +optional
	CatchUpIndex int64 `json:"catchUpIndex,omitempty"`
	// Message says what the restore does or waits for, or why it stopped.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Message",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Message string `json:"message,omitempty"`
}

// RestoreLock is the operation lock a restore holds on its cluster: no upgrade, backup or
// scale-down starts while it is set.
type RestoreLock struct {
	// Name of the OpenBaoRestore.
	Name string `json:"name"`
	// UID of the OpenBaoRestore.
	UID string `json:"uid"`
	// Since is when the lock was taken.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=baorestore,categories=openbao
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.cluster.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Location",type=string,JSONPath=`.status.location`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Restored")].reason`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.spec == oldSelf.spec",message="an OpenBaoRestore cannot be changed once created: create a new one"
// +operator-sdk:csv:customresourcedefinitions:displayName="OpenBao Restore",resources={{Job,v1,""},{Pod,v1,""},{OpenBaoCluster,v1alpha1,""}}

// OpenBaoRestore replaces an OpenBaoCluster's data with a Raft snapshot: the operator checks
// the snapshot, installs it through the active node and restarts every server.
type OpenBaoRestore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec OpenBaoRestoreSpec `json:"spec"`
	// +optional
	Status OpenBaoRestoreStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// OpenBaoRestoreList is a list of OpenBaoRestore.
type OpenBaoRestoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OpenBaoRestore `json:"items"`
}
