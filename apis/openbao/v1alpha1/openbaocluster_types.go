package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// OpenBaoClusterSpec is the desired state of an OpenBao cluster.
type OpenBaoClusterSpec struct {
	// Version of OpenBao to run, as a semantic version such as "2.7.2". Changing it starts an
	// upgrade (see spec.upgrade); a lower version than the running one is refused unless
	// spec.upgrade.allowDowngrade is true.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('v')",message="version is written without a leading v, as OpenBao reports it: 2.7.2, not v2.7.2"
	// +kubebuilder:validation:XValidation:rule="self.startsWith('v') || self.matches('^(0|[1-9][0-9]*)\\\\.(0|[1-9][0-9]*)\\\\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\\\\+[0-9A-Za-z.-]+)?$')",message="version must be a semantic version such as 2.7.2 (MAJOR.MINOR.PATCH, optionally with -prerelease or +build)"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="OpenBao version",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Version string `json:"version"`

	// Image overrides the container image of the OpenBao pods. When empty the operator runs
	// the official image of spec.version. Set it to use a mirror; the image must hold the
	// OpenBao release named by spec.version.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self == '' || self.matches('^[^\\\\s]+$')",message="image must be a container image reference without spaces"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Image override",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text","urn:alm:descriptor:com.tectonic.ui:advanced"}
	Image string `json:"image,omitempty"`

	// Replicas is the number of OpenBao servers, all Raft voters. It must be odd so that a
	// majority survives the loss of (replicas-1)/2 servers. Lowering it removes the servers
	// with the highest ordinals one at a time: leadership moves away first, the server leaves
	// the Raft configuration, then its pod and its data volume are deleted (see the README).
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=9
	// +kubebuilder:validation:XValidation:rule="self % 2 == 1",message="replicas must be odd (1, 3, 5, 7 or 9) so that Raft keeps a majority"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Replicas",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:podCount"}
	Replicas *int32 `json:"replicas,omitempty"`

	// Paused stops the operator from changing anything that belongs to this cluster. An
	// upgrade in progress keeps its state and resumes where it stopped when Paused is set back
	// to false. Spec changes made while paused are applied after unpausing.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Paused",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:booleanSwitch"}
	Paused bool `json:"paused,omitempty"`

	// Upgrade configures how version changes are rolled out.
	// +optional
	// +kubebuilder:default={}
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Upgrade"
	Upgrade UpgradeSpec `json:"upgrade,omitempty"`

	// Storage configures the persistent volume of each server, which holds its Raft data.
	// +optional
	// +kubebuilder:default={}
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Storage"
	Storage StorageSpec `json:"storage,omitempty"`

	// Raft tunes OpenBao's integrated storage.
	// +optional
	// +kubebuilder:default={}
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Raft",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:advanced"}
	Raft RaftSpec `json:"raft,omitempty"`

	// Resources are the compute resources of each OpenBao container.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Resources",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:resourceRequirements"}
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// TLS configures the certificates of the OpenBao listener. By default the operator creates
	// and keeps a private CA and a server certificate valid for the cluster's Services and pods.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="TLS",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:advanced"}
	TLS *TLSSpec `json:"tls,omitempty"`

	// SelfInit lists requests that OpenBao applies to itself on its very first start, after
	// the operator's own (JWT auth, upgrade and operator roles): enable secret engines and
	// auth methods, write policies and roles, so that people get an administrative path
	// without any root token. They run once, when the cluster is initialized; later changes
	// are not applied to a running cluster.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Self-initialization requests",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:advanced"}
	SelfInit []SelfInitRequest `json:"selfInit,omitempty"`

	// Backup takes Raft snapshots on a schedule or on request (see the README's "Backups").
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Backups"
	Backup *BackupSpec `json:"backup,omitempty"`

	// Seal configures the static seal key that encrypts the cluster's data.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Seal key",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:advanced"}
	Seal *SealSpec `json:"seal,omitempty"`
}

// SealSpec configures the cluster's static seal key.
type SealSpec struct {
	// ExistingSecret names a Secret in the cluster's namespace whose key "key" holds a
	// 32-byte seal key, such as another cluster's <cluster>-unseal-key. A new cluster copies
	// it into its own <cluster>-unseal-key instead of generating a key, so that it can
	// restore that cluster's snapshots (rollback, disaster recovery). A cluster that already
	// has a seal key keeps it: a different key here is reported (Degraded, InvalidSpec) and
	// never applied.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",message="seal.existingSecret must be the name of a Secret in the cluster's namespace"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="seal.existingSecret cannot be changed: the cluster's data is encrypted under the key it was created with"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Existing seal-key Secret",xDescriptors={"urn:alm:descriptor:io.kubernetes:Secret"}
	ExistingSecret string `json:"existingSecret,omitempty"`
}

// RaftSpec tunes OpenBao's integrated (Raft) storage.
type RaftSpec struct {
	// PerformanceMultiplier scales Raft's timing (heartbeats, elections, leader lease): 1 is
	// the fastest and what production networks want (a new active node about 2 s after the
	// active one is lost); raise it, up to 10, only for slow or congested networks. Rendered
	// into the servers' configuration; running servers take a new value when they restart
	// (the next upgrade).
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Raft performance multiplier",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:number"}
	PerformanceMultiplier int32 `json:"performanceMultiplier,omitempty"`
}

// DefaultPerformanceMultiplier is Raft's timing scale when spec.raft.performanceMultiplier
// is not set.
const DefaultPerformanceMultiplier int32 = 1

// PerformanceMultiplierOrDefault is spec.raft.performanceMultiplier, or its default.
func (s *OpenBaoClusterSpec) PerformanceMultiplierOrDefault() int32 {
	if s.Raft.PerformanceMultiplier == 0 {
		return DefaultPerformanceMultiplier
	}
	return s.Raft.PerformanceMultiplier
}

// DefaultReplicas is the number of servers when spec.replicas is not set.
const DefaultReplicas int32 = 3

// ReplicaCount is spec.replicas, or its default.
func (s *OpenBaoClusterSpec) ReplicaCount() int32 {
	if s.Replicas == nil {
		return DefaultReplicas
	}
	return *s.Replicas
}

// UpgradeStrategyType names how an upgrade is carried out. It is checked by a rule rather
// than a schema enum: an enum mismatch makes the API server skip every other rule of the
// object and add a confusing "some validation rules were not checked" line to the message.
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="self in ['Rolling', 'BlueGreen']",message="strategy must be Rolling or BlueGreen"
type UpgradeStrategyType string

const (
	// RollingUpgrade replaces the servers one at a time, highest ordinal first, moving
	// leadership away from a server before it is replaced.
	RollingUpgrade UpgradeStrategyType = "Rolling"
	// BlueGreenUpgrade builds a second set of servers on the new version that joins the Raft
	// cluster, takes over traffic and leadership, and then retires the old set.
	BlueGreenUpgrade UpgradeStrategyType = "BlueGreen"
)

// UpgradeSpec configures how version changes are rolled out.
type UpgradeSpec struct {
	// Strategy is Rolling (default) or BlueGreen.
	// +optional
	// +kubebuilder:default=Rolling
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Upgrade strategy",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:select:Rolling","urn:alm:descriptor:com.tectonic.ui:select:BlueGreen"}
	Strategy UpgradeStrategyType `json:"strategy,omitempty"`

	// ExecutorImage is the image of the upgrade Jobs (step-down, snapshot). When empty the
	// operator uses its own image.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self != ''",message="executorImage must name an image; leave the field out to use the operator's own image"
	// +kubebuilder:validation:XValidation:rule="self == '' || self.matches('^[^\\\\s]+$')",message="executorImage must be a container image reference without spaces"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Executor image",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text","urn:alm:descriptor:com.tectonic.ui:advanced"}
	ExecutorImage string `json:"executorImage,omitempty"`

	// JWTAuthRole is the name of the OpenBao JWT auth role (and policy) that upgrade Jobs log
	// in with. OpenBao creates it on first start for the
	// <cluster>-upgrade-serviceaccount; it grants only what upgrades need.
	// +optional
	// +kubebuilder:default=openbao-upgrade
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9_]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="JWT auth role for upgrades",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text","urn:alm:descriptor:com.tectonic.ui:advanced"}
	JWTAuthRole string `json:"jwtAuthRole,omitempty"`

	// PreUpgradeSnapshot saves a Raft snapshot before the first server is touched: to the
	// bucket of spec.backup.target.s3 when it is set (as
	// <cluster>-pre-upgrade-<version>-<revision>.snap, which backup retention never deletes),
	// otherwise to the <cluster>-snapshots volume. status.upgrade.snapshot says where. The
	// upgrade waits for it and does not start if it fails.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Snapshot before upgrading",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:booleanSwitch"}
	PreUpgradeSnapshot bool `json:"preUpgradeSnapshot,omitempty"`

	// AllowDowngrade permits spec.version to be lower than the running version. OpenBao does
	// not promise that data written by a newer release is readable by an older one: restore a
	// snapshot instead where you can.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Allow downgrade",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:booleanSwitch","urn:alm:descriptor:com.tectonic.ui:advanced"}
	AllowDowngrade bool `json:"allowDowngrade,omitempty"`

	// StepTimeout bounds each step of an upgrade (a server becoming healthy again, a
	// step-down, a snapshot). A step that takes longer halts the upgrade with Degraded=True.
	// +optional
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="stepTimeout must be a positive duration such as 10m"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Step timeout",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text","urn:alm:descriptor:com.tectonic.ui:advanced"}
	StepTimeout *metav1.Duration `json:"stepTimeout,omitempty"`

	// BlueGreen configures the BlueGreen strategy.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Blue/Green"
	BlueGreen *BlueGreenSpec `json:"blueGreen,omitempty"`

	// RetryToken retries a halted upgrade on the same target: set it to any value it has not
	// had before (a date, a counter) once the cause of the halt is fixed. The operator clears
	// the halt and runs the failed step again with a fresh deadline, once per new value
	// (status.observedRetryToken records the value it acted on). A new value while no upgrade
	// is halted is recorded and changes nothing.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Retry token (retry a halted upgrade)",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	RetryToken string `json:"retryToken,omitempty"`
}

// BlueGreenSpec configures the BlueGreen strategy.
type BlueGreenSpec struct {
	// VerificationPeriod is how long the new (Green) servers serve traffic before the old
	// (Blue) servers are retired. Until then setting spec.version back aborts the upgrade.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="verificationPeriod must not be negative"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Verification period",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	VerificationPeriod *metav1.Duration `json:"verificationPeriod,omitempty"`

	// RequireConfirmation makes the operator wait, after the verification period, until
	// ConfirmedVersion equals the target version before it retires the old servers.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Require confirmation",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:booleanSwitch"}
	RequireConfirmation bool `json:"requireConfirmation,omitempty"`

	// ConfirmedVersion confirms the retirement of the old servers for the upgrade to this
	// version. Only read when RequireConfirmation is true.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^([0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]*)?)?$`
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Confirmed version",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text","urn:alm:descriptor:com.tectonic.ui:fieldDependency:upgrade.blueGreen.requireConfirmation:true"}
	ConfirmedVersion string `json:"confirmedVersion,omitempty"`
}

// StorageSpec configures each server's persistent volume.
type StorageSpec struct {
	// Size of each server's volume. Volumes are created with the cluster; changing the size
	// later does not resize existing volumes.
	// +optional
	// +kubebuilder:default="10Gi"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Volume size",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Size resource.Quantity `json:"size,omitempty"`

	// StorageClassName of the volumes. Empty means the cluster's default StorageClass.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Storage class",xDescriptors={"urn:alm:descriptor:io.kubernetes:StorageClass"}
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// TLSSpec configures the OpenBao listener's certificates.
type TLSSpec struct {
	// ExistingSecret names a Secret of type kubernetes.io/tls in the cluster's namespace
	// holding tls.crt, tls.key and ca.crt. The certificate must be valid for the names listed
	// in the README (Services and per-pod names). When empty the operator manages a CA.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Existing TLS Secret",xDescriptors={"urn:alm:descriptor:io.kubernetes:Secret"}
	ExistingSecret string `json:"existingSecret,omitempty"`
}

// SelfInitOperation is the kind of request OpenBao applies during self-initialization.
// +kubebuilder:validation:Enum=create;update;delete
type SelfInitOperation string

// SelfInitRequest is one API request that OpenBao applies to itself on first start.
type SelfInitRequest struct {
	// Name identifies the request in OpenBao's logs.
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9_]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// Path is the API path without the /v1/ prefix, such as "sys/mounts/secret".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.startsWith('v1/')",message="path is relative to /v1/, e.g. sys/policies/acl/admin"
	Path string `json:"path"`

	// Operation is create, update (default) or delete.
	// +optional
	// +kubebuilder:default=update
	Operation SelfInitOperation `json:"operation,omitempty"`

	// Data is the request body.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Data *runtime.RawExtension `json:"data,omitempty"`
}

// OpenBaoClusterStatus is what the operator observed of the cluster.
type OpenBaoClusterStatus struct {
	// Phase summarizes the conditions: Pending, Initializing, Running, Upgrading, Degraded
	// or Paused.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Phase",xDescriptors={"urn:alm:descriptor:io.kubernetes.phase"}
	Phase ClusterPhase `json:"phase,omitempty"`

	// CurrentVersion is the OpenBao version every server runs. During an upgrade it is the
	// version the upgrade started from.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Current version",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	CurrentVersion string `json:"currentVersion,omitempty"`

	// CurrentImage is the image every server runs.
	// +optional
	CurrentImage string `json:"currentImage,omitempty"`

	// ObservedGeneration is the generation of the spec that the operator last acted on
	// completely.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Replicas is the number of server pods that exist.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// Initialized is true once OpenBao reported the cluster initialized. From then on the
	// self-initialization requests are no longer given to any server.
	// +optional
	Initialized bool `json:"initialized,omitempty"`

	// StatefulSet is the StatefulSet whose pods are the cluster's servers. It is the
	// cluster's name until a BlueGreen upgrade replaces the servers with a StatefulSet of
	// its own.
	// +optional
	StatefulSet string `json:"statefulSet,omitempty"`

	// ReadyReplicas is the number of server pods that are Ready (unsealed and serving).
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Ready servers",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// Leader is the pod that is the active OpenBao node.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Leader",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Leader string `json:"leader,omitempty"`

	// Members is what each server pod reported.
	// +optional
	// +listType=map
	// +listMapKey=pod
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Members"
	Members []MemberStatus `json:"members,omitempty"`

	// ServiceAccountKeys are the fingerprints (sha256 of the public key's DER encoding) of
	// the Kubernetes service-account keys that OpenBao's JWT auth was last given by the
	// operator, sorted; they follow the keys the API server publishes.
	// +optional
	// +listType=atomic
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Service-account keys trusted by OpenBao"
	ServiceAccountKeys []string `json:"serviceAccountKeys,omitempty"`

	// Conditions are Available, Upgrading, Degraded, Paused, ServiceAccountKeysSynced,
	// (once replicas were lowered) ScalingDown and (with spec.backup) BackupHealthy.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Conditions",xDescriptors={"urn:alm:descriptor:io.kubernetes.conditions"}
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedRetryToken is the last spec.upgrade.retryToken the operator has seen: a
	// spec value that differs from it is a new request to retry a halted upgrade.
	// +optional
	ObservedRetryToken string `json:"observedRetryToken,omitempty"`

	// Upgrade is the progress of the upgrade in flight; empty when none is.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Upgrade progress"
	Upgrade *UpgradeStatus `json:"upgrade,omitempty"`

	// Backup is the state of the backups: the one running, the last successful and the
	// last failed.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Backups"
	Backup *BackupStatus `json:"backup,omitempty"`

	// ScaleDown is the progress of the scale-down in flight; empty when none is.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Scale-down progress"
	ScaleDown *ScaleDownStatus `json:"scaleDown,omitempty"`

	// Restore is the operation lock of the OpenBaoRestore in flight, written by the restore
	// controller before its Job is created: no upgrade, backup or scale-down starts while it
	// is set.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Restore in flight"
	Restore *RestoreLock `json:"restore,omitempty"`
}

// ScaleDownStatus holds everything needed to resume a scale-down after an operator restart.
// Whether a server is still a Raft peer is read from OpenBao on every pass; what the
// operator decided (the StatefulSet's replica count, the server being removed) is kept here.
type ScaleDownStatus struct {
	// FromReplicas is the number of servers when the scale-down started.
	FromReplicas int32 `json:"fromReplicas"`
	// ToReplicas is the number of servers the scale-down works towards (spec.replicas).
	ToReplicas int32 `json:"toReplicas"`
	// Replicas is the replica count the operator gives the StatefulSet now. It is lowered by
	// one only after the highest server left the Raft configuration.
	Replicas int32 `json:"replicas"`
	// Pod is the server being removed.
	// +optional
	Pod string `json:"pod,omitempty"`
	// Step is the current step: StepDown, WaitLeadershipMoved, RemovePeer, LowerReplicas,
	// WaitPodGone, DeleteVolume, WaitVolumeGone, Cleanup, or Wait.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Scale-down step",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Step string `json:"step,omitempty"`
	// Message describes the current step for people.
	// +optional
	Message string `json:"message,omitempty"`
	// StartTime is when the scale-down started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
}

// MemberStatus is what one server pod reported.
type MemberStatus struct {
	// Pod is the pod's name (also its Raft node ID).
	Pod string `json:"pod"`
	// Version is the OpenBao version the server reports.
	// +optional
	Version string `json:"version,omitempty"`
	// Initialized is true when OpenBao reports the cluster initialized.
	// +optional
	Initialized bool `json:"initialized,omitempty"`
	// Sealed is true when the server is sealed.
	// +optional
	Sealed bool `json:"sealed,omitempty"`
	// Active is true for the active node (the Raft leader).
	// +optional
	Active bool `json:"active,omitempty"`
	// Voter is true when the server is a Raft voter.
	// +optional
	Voter bool `json:"voter,omitempty"`
	// Healthy is autopilot's view of the server; false when it is not known yet.
	// +optional
	Healthy bool `json:"healthy,omitempty"`
	// Error says why the server could not be asked, when it could not.
	// +optional
	Error string `json:"error,omitempty"`
}

// UpgradeStatus holds everything needed to resume an upgrade after an operator restart.
type UpgradeStatus struct {
	// FromVersion is the version the upgrade started from.
	FromVersion string `json:"fromVersion"`
	// ToVersion is the target version.
	ToVersion string `json:"toVersion"`
	// FromImage is the image the upgrade started from.
	// +optional
	FromImage string `json:"fromImage,omitempty"`
	// ToImage is the target image.
	// +optional
	ToImage string `json:"toImage,omitempty"`
	// Strategy carrying the upgrade; fixed for its whole life.
	Strategy UpgradeStrategyType `json:"strategy"`
	// Revision is a short hash of the target pod template, used to name the upgrade's Jobs
	// and objects deterministically.
	// +optional
	Revision string `json:"revision,omitempty"`
	// Step is the strategy's current step.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Upgrade step",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Step string `json:"step,omitempty"`
	// Message describes the current step for people.
	// +optional
	Message string `json:"message,omitempty"`
	// StartTime is when the upgrade started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// CurrentPod is the pod the current step is about.
	// +optional
	CurrentPod string `json:"currentPod,omitempty"`
	// StepStartTime is when the current step started.
	// +optional
	StepStartTime *metav1.Time `json:"stepStartTime,omitempty"`
	// StepDeadline is when the current step times out. It is moved forward by the time the
	// cluster spends paused.
	// +optional
	StepDeadline *metav1.Time `json:"stepDeadline,omitempty"`
	// PausedAt is when the cluster was paused during this upgrade, while it is.
	// +optional
	PausedAt *metav1.Time `json:"pausedAt,omitempty"`
	// Attempts counts the tries of the current step.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// LastError is the last error of the current step.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// Snapshot is the pre-upgrade snapshot, when one was requested.
	// +optional
	Snapshot *SnapshotStatus `json:"snapshot,omitempty"`
	// Rolling is the state of a Rolling upgrade.
	// +optional
	Rolling *RollingStatus `json:"rolling,omitempty"`
	// BlueGreen is the state of a BlueGreen upgrade.
	// +optional
	BlueGreen *BlueGreenStatus `json:"blueGreen,omitempty"`

	// Partition is deprecated: releases before status.upgrade.rolling wrote it here. It is
	// read once, moved to rolling.partition and never written again.
	// +optional
	Partition *int32 `json:"partition,omitempty"`
	// CatchUpIndex is deprecated: moved to rolling.catchUpIndex (see Partition).
	// +optional
	CatchUpIndex int64 `json:"catchUpIndex,omitempty"`
	// PodsDone is deprecated: moved to rolling.podsDone (see Partition).
	// +optional
	// +listType=set
	PodsDone []string `json:"podsDone,omitempty"`
}

// RollingStatus is the state of a Rolling upgrade.
type RollingStatus struct {
	// Revision is the upgrade revision (status.upgrade.revision) these fields were recorded
	// for: when a halted upgrade takes a new target, the Rolling strategy starts afresh.
	// +optional
	Revision string `json:"revision,omitempty"`
	// Partition is the StatefulSet partition the upgrade last set.
	// +optional
	Partition *int32 `json:"partition,omitempty"`
	// CatchUpIndex is the leader's committed Raft index when the current pod was first seen
	// healthy on the target: the pod has caught up once it has applied it. (Under write load
	// a follower always trails the leader's latest index by a few entries.)
	// +optional
	CatchUpIndex int64 `json:"catchUpIndex,omitempty"`
	// PodsDone are the pods that run the target version and caught up.
	// +optional
	// +listType=set
	PodsDone []string `json:"podsDone,omitempty"`
}

// SnapshotStatus records the pre-upgrade snapshot. It goes where spec.backup.target says:
// to the bucket of spec.backup.target.s3 (location, endpoint, size and sha256 set), or else
// to the <cluster>-snapshots volume (persistentVolumeClaim and path set).
type SnapshotStatus struct {
	// JobName is the Job that takes the snapshot.
	// +optional
	JobName string `json:"jobName,omitempty"`
	// Location is where the snapshot is, in the form an OpenBaoRestore's
	// spec.source.location takes: s3://<bucket>/<key> or pvc://<claim>/<path inside the
	// volume>. It is recorded before the Job runs.
	// +optional
	Location string `json:"location,omitempty"`
	// Endpoint is the S3 endpoint, for a snapshot in object storage.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// Size of the snapshot in bytes, for a snapshot in object storage.
	// +optional
	Size int64 `json:"size,omitempty"`
	// SHA256 of the snapshot, hex encoded, for a snapshot in object storage (also the
	// object's sha256 tag).
	// +optional
	SHA256 string `json:"sha256,omitempty"`
	// PersistentVolumeClaim holds the snapshot file, for a snapshot on the volume.
	// +optional
	PersistentVolumeClaim string `json:"persistentVolumeClaim,omitempty"`
	// Path of the snapshot file inside the mounted volume (/snapshots/...), for a snapshot
	// on the volume.
	// +optional
	Path string `json:"path,omitempty"`
	// CompletionTime is when the snapshot was saved.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// BlueGreenStatus is the state of a BlueGreen upgrade.
type BlueGreenStatus struct {
	// BlueStatefulSet serves the cluster when the upgrade starts.
	// +optional
	BlueStatefulSet string `json:"blueStatefulSet,omitempty"`
	// GreenStatefulSet runs the target version.
	// +optional
	GreenStatefulSet string `json:"greenStatefulSet,omitempty"`
	// SyncStartTime is when every Green server had joined and autopilot reported each of them
	// healthy; the minimum sync time counts from it.
	// +optional
	SyncStartTime *metav1.Time `json:"syncStartTime,omitempty"`
	// SyncCommitIndex is the leader's committed Raft index at SyncStartTime: every Green
	// server must have applied it by the end of the minimum sync time.
	// +optional
	SyncCommitIndex int64 `json:"syncCommitIndex,omitempty"`
	// ServingStatefulSet receives client traffic while the upgrade runs: Blue until the
	// cutover, Green after it (and Blue again when the upgrade is aborted).
	// +optional
	ServingStatefulSet string `json:"servingStatefulSet,omitempty"`
	// CutoverTime is when the client Service was switched to Green.
	// +optional
	CutoverTime *metav1.Time `json:"cutoverTime,omitempty"`
	// Aborting is true when the user set the version back before Blue was retired.
	// +optional
	Aborting bool `json:"aborting,omitempty"`
	// Phase is where the upgrade stands: DeployingGreen, JoiningNonVoters, Syncing,
	// Promoting, CuttingOver, Verifying, AwaitingConfirmation, RetiringBlue, DeletingBlue,
	// or Aborting; empty while the pre-upgrade snapshot is taken, before Green exists.
	// Blue can be given back (abort) until the phase is RetiringBlue.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Blue/Green phase",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Phase BlueGreenPhase `json:"phase,omitempty"`
	// LastMembershipChange is when the operator last asked OpenBao to change a server's
	// Raft membership (promote); a request that has not taken effect is repeated after a
	// while, never in a tight loop.
	// +optional
	LastMembershipChange *metav1.Time `json:"lastMembershipChange,omitempty"`
}

// BlueGreenPhase is the phase of a BlueGreen upgrade.
// +kubebuilder:validation:Enum=DeployingGreen;JoiningNonVoters;Syncing;Promoting;CuttingOver;Verifying;AwaitingConfirmation;RetiringBlue;DeletingBlue;Aborting
type BlueGreenPhase string

// BlueGreen phases, in the order a successful upgrade goes through them.
const (
	// BlueGreenDeployingGreen: the Green StatefulSet and its configuration are created.
	BlueGreenDeployingGreen BlueGreenPhase = "DeployingGreen"
	// BlueGreenJoiningNonVoters: Green's servers start and join Blue's Raft cluster as non-voters.
	BlueGreenJoiningNonVoters BlueGreenPhase = "JoiningNonVoters"
	// BlueGreenSyncing: Green's servers replicate until each has caught up with the leader for
	// the minimum sync time.
	BlueGreenSyncing BlueGreenPhase = "Syncing"
	// BlueGreenPromoting: Green's servers are promoted to voters, one at a time.
	BlueGreenPromoting BlueGreenPhase = "Promoting"
	// BlueGreenCuttingOver: the client Service is switched to Green's pods.
	BlueGreenCuttingOver BlueGreenPhase = "CuttingOver"
	// BlueGreenVerifying: Green serves the clients for the verification period.
	BlueGreenVerifying BlueGreenPhase = "Verifying"
	// BlueGreenAwaitingConfirmation: the operator waits for spec.upgrade.blueGreen.confirmedVersion.
	BlueGreenAwaitingConfirmation BlueGreenPhase = "AwaitingConfirmation"
	// BlueGreenRetiringBlue: Blue's servers leave Raft; there is no way back.
	BlueGreenRetiringBlue BlueGreenPhase = "RetiringBlue"
	// BlueGreenDeletingBlue: none of Blue's servers is in Raft any more; Green is the active
	// StatefulSet, and Blue's StatefulSet and volumes are deleted.
	BlueGreenDeletingBlue BlueGreenPhase = "DeletingBlue"
	// BlueGreenAborting: traffic returns to Blue and Green is removed.
	BlueGreenAborting BlueGreenPhase = "Aborting"
)

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bao,categories=openbao
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.currentVersion`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.version`,priority=1
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Leader",type=string,JSONPath=`.status.leader`
// +kubebuilder:printcolumn:name="Step",type=string,JSONPath=`.status.upgrade.step`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 40",message="the cluster name must be at most 40 characters: it prefixes the names of pods, Services and Jobs"
// +operator-sdk:csv:customresourcedefinitions:displayName="OpenBao Cluster",resources={{StatefulSet,v1,""},{Service,v1,""},{Secret,v1,""},{ConfigMap,v1,""},{Job,v1,""},{PodDisruptionBudget,v1,""},{ServiceAccount,v1,""}}

// OpenBaoCluster is a highly available OpenBao cluster with integrated (Raft) storage,
// auto-unsealed with a static key and upgraded in place by the operator.
type OpenBaoCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec OpenBaoClusterSpec `json:"spec"`
	// +optional
	Status OpenBaoClusterStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// OpenBaoClusterList is a list of OpenBaoCluster.
type OpenBaoClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OpenBaoCluster `json:"items"`
}
