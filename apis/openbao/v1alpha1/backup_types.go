package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BackupSpec configures the cluster's backups: Raft snapshots taken by executor Jobs on a
// schedule or on request, kept on the cluster's snapshot volume or in S3-compatible object
// storage. Scheduled backups wait while an upgrade is in flight.
// +kubebuilder:validation:XValidation:rule="has(self.schedule) || has(self.requestID)",message="backup needs a schedule (a cron expression such as '0 */6 * * *') or a requestID (an on-demand backup)"
type BackupSpec struct {
	// Schedule is a cron expression in UTC with five fields (minute hour day-of-month month
	// day-of-week), such as "0 */6 * * *", or a descriptor such as @daily. Missed times are
	// not caught up: after a pause or an upgrade only the latest missed backup runs.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$') || self.matches('^[0-9A-Za-z*/,?-]+( +[0-9A-Za-z*/,?-]+){4}$')",message="schedule must be a cron expression with five fields (minute hour day-of-month month day-of-week), such as '0 */6 * * *', or one of @hourly, @daily, @weekly, @monthly, @yearly"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Backup schedule (cron, UTC)",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Schedule string `json:"schedule,omitempty"`

	// RequestID asks for an on-demand backup: each time it is set to a new value the
	// operator takes one backup (after an upgrade in flight has finished). Any short text
	// such as the current date will do; status.backup.lastRequestID says which was handled.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.:]*[A-Za-z0-9])?$`
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="On-demand backup request",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	RequestID string `json:"requestID,omitempty"`

	// Retention says which backups are kept after each successful backup; the others are
	// deleted from the target. A backup is kept when it is one of the newest keepLast, or
	// younger than maxAge; the newest one is always kept. Without either, nothing is deleted.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Retention"
	Retention BackupRetention `json:"retention,omitempty"`

	// Target is where the snapshots go: the cluster's snapshot volume (<cluster>-snapshots)
	// when s3 is not set. The pre-upgrade snapshot stays on the snapshot volume.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Target"
	Target BackupTarget `json:"target,omitempty"`

	// Timeout bounds one backup (login, snapshot, upload and retention).
	// +optional
	// +kubebuilder:default="30m"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="timeout must be a positive duration such as 30m"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Backup timeout",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text","urn:alm:descriptor:com.tectonic.ui:advanced"}
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// BackupRetention says which backups are kept.
type BackupRetention struct {
	// KeepLast keeps the newest N backups.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Keep the newest",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:number"}
	KeepLast *int32 `json:"keepLast,omitempty"`

	// MaxAge keeps the backups younger than this duration, such as 168h.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="maxAge must be a positive duration such as 168h"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Keep backups younger than",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`
}

// BackupTarget is where backups are written.
type BackupTarget struct {
	// S3 writes the backups to S3-compatible object storage instead of the snapshot volume.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="S3-compatible object storage"
	S3 *S3Target `json:"s3,omitempty"`
}

// S3Target is a bucket of S3-compatible object storage. Objects are named
// <prefix><namespace>/<cluster>/<cluster>-<UTC time>.snap.
// +kubebuilder:validation:XValidation:rule="has(self.bucket) && size(self.bucket) > 0",message="s3.bucket is required: the bucket the backups are written to"
// +kubebuilder:validation:XValidation:rule="has(self.credentialsSecret) && size(self.credentialsSecret) > 0",message="s3.credentialsSecret is required: a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the cluster's namespace"
type S3Target struct {
	// Endpoint is the URL of the S3 API, such as https://s3.eu-west-1.amazonaws.com or
	// https://minio.storage.svc:9000.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^/\\\\s]+/?$')",message="endpoint must be an http(s) URL without a path, such as https://s3.example.com:9000"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Endpoint",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Endpoint string `json:"endpoint"`

	// Bucket the backups are written to; it must exist.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Bucket",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Bucket string `json:"bucket,omitempty"`

	// Prefix is prepended to every object name, such as "openbao/".
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/')",message="prefix must not start with /"
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Object name prefix",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Prefix string `json:"prefix,omitempty"`

	// Region of the bucket; us-east-1 when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Region",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text","urn:alm:descriptor:com.tectonic.ui:advanced"}
	Region string `json:"region,omitempty"`

	// PathStyle addresses the bucket as <endpoint>/<bucket> instead of <bucket>.<endpoint>
	// (most self-hosted servers want this).
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Path-style addressing",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:booleanSwitch"}
	PathStyle bool `json:"pathStyle,omitempty"`

	// CredentialsSecret names a Secret in the cluster's namespace with the keys
	// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. They need to put, list, tag and delete
	// objects under the prefix.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Credentials Secret",xDescriptors={"urn:alm:descriptor:io.kubernetes:Secret"}
	CredentialsSecret string `json:"credentialsSecret,omitempty"`

	// CABundle is the CA certificate (PEM) that signed the endpoint's certificate, when the
	// system's CAs do not.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="CA bundle",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:advanced"}
	CABundle *CABundleSource `json:"caBundle,omitempty"`
}

// CABundleSource is a key of a Secret or of a ConfigMap in the cluster's namespace.
// +kubebuilder:validation:XValidation:rule="has(self.secretName) != has(self.configMapName)",message="caBundle names either a secretName or a configMapName"
type CABundleSource struct {
	// SecretName holds the CA bundle.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Secret",xDescriptors={"urn:alm:descriptor:io.kubernetes:Secret"}
	SecretName string `json:"secretName,omitempty"`
	// ConfigMapName holds the CA bundle.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="ConfigMap",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	ConfigMapName string `json:"configMapName,omitempty"`
	// Key of the PEM bundle; ca.crt when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +operator-sdk:csv:customresourcedefinitions:type=spec,displayName="Key",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Key string `json:"key,omitempty"`
}

// BackupTrigger says why a backup ran.
type BackupTrigger string

const (
	// BackupScheduled: a time of spec.backup.schedule.
	BackupScheduled BackupTrigger = "Schedule"
	// BackupOnDemand: a new spec.backup.requestID.
	BackupOnDemand BackupTrigger = "OnDemand"
)

// BackupStatus is the state of the cluster's backups.
type BackupStatus struct {
	// LastScheduleTime is the latest time of the schedule that a backup was started for.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`
	// NextScheduleTime is when the next scheduled backup is due.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Next backup",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`
	// LastRequestID is the spec.backup.requestID that a backup was started for.
	// +optional
	LastRequestID string `json:"lastRequestID,omitempty"`
	// Running is the backup in flight, recorded before its Job is created.
	// +optional
	Running *BackupRecord `json:"running,omitempty"`
	// LastSuccessful is the newest backup that completed.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Last successful backup"
	LastSuccessful *BackupRecord `json:"lastSuccessful,omitempty"`
	// LastFailed is the newest backup that failed.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Last failed backup"
	LastFailed *BackupRecord `json:"lastFailed,omitempty"`
}

// BackupRecord describes one backup and where its snapshot is.
type BackupRecord struct {
	// JobName is the executor Job that takes the backup.
	JobName string `json:"jobName"`
	// Trigger is Schedule or OnDemand.
	Trigger BackupTrigger `json:"trigger"`
	// ScheduledTime is the schedule time (Schedule) or the time of the request (OnDemand);
	// the snapshot's name carries it.
	ScheduledTime metav1.Time `json:"scheduledTime"`
	// StartTime is when the Job was created.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// CompletionTime is when the backup completed or failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Location is where the snapshot is: s3://<bucket>/<key> or
	// pvc://<claim>/<path inside the volume>.
	// +optional
	// +operator-sdk:csv:customresourcedefinitions:type=status,displayName="Location",xDescriptors={"urn:alm:descriptor:com.tectonic.ui:text"}
	Location string `json:"location,omitempty"`
	// Endpoint is the S3 endpoint, for a backup in object storage.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// Size of the snapshot in bytes.
	// +optional
	Size int64 `json:"size,omitempty"`
	// SHA256 of the snapshot, hex encoded; also stored with the snapshot (the object's
	// sha256 tag, or the file <snapshot>.sha256).
	// +optional
	SHA256 string `json:"sha256,omitempty"`
	// Deleted lists what retention removed after this backup.
	// +optional
	Deleted []string `json:"deleted,omitempty"`
	// Message says what happened, or why the backup failed.
	// +optional
	Message string `json:"message,omitempty"`
}
