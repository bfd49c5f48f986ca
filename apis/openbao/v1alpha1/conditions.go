package v1alpha1

// ClusterPhase summarizes an OpenBaoCluster's conditions in one word for `kubectl get`.
// It is derived from the conditions and never read back as a source of truth.
// +kubebuilder:validation:Enum=Pending;Initializing;Running;Upgrading;Degraded;Paused
type ClusterPhase string

const (
	// PhasePending: the operator has not created the servers yet, or the spec is invalid.
	PhasePending ClusterPhase = "Pending"
	// PhaseInitializing: servers exist but the cluster is not Available yet.
	PhaseInitializing ClusterPhase = "Initializing"
	// PhaseRunning: the cluster is Available (an active node and a Raft quorum of ready
	// servers); status.readyReplicas tells whether every server is ready.
	PhaseRunning ClusterPhase = "Running"
	// PhaseUpgrading: an upgrade is in progress.
	PhaseUpgrading ClusterPhase = "Upgrading"
	// PhaseDegraded: something needs a person's attention; see the Degraded condition.
	PhaseDegraded ClusterPhase = "Degraded"
	// PhasePaused: spec.paused is true; the operator changes nothing.
	PhasePaused ClusterPhase = "Paused"
)

// Condition types.
const (
	// ConditionAvailable is True when the cluster has an active node and a Raft quorum of
	// ready servers, so clients can read and write secrets.
	ConditionAvailable = "Available"
	// ConditionUpgrading is True while an upgrade is in progress (also while it is paused or
	// halted).
	ConditionUpgrading = "Upgrading"
	// ConditionDegraded is True when the operator stopped an operation or cannot converge and
	// a person must act; the message says what to do.
	ConditionDegraded = "Degraded"
	// ConditionPaused is True when spec.paused is true.
	ConditionPaused = "Paused"
	// ConditionServiceAccountKeysSynced is True when OpenBao's JWT auth trusts the
	// service-account keys the Kubernetes API server publishes, so the operator and its
	// upgrade Jobs can log in after a rotation of the signing key.
	ConditionServiceAccountKeysSynced = "ServiceAccountKeysSynced"
	// ConditionScalingDown is True while servers are being removed after spec.replicas was
	// lowered, and False with reason ScaleDownBlocked while a lower spec.replicas waits (an
	// upgrade in flight, servers that are not healthy); the message says what it waits for.
	ConditionScalingDown = "ScalingDown"
	// ConditionBackupHealthy is False when the last backup failed or backups cannot run;
	// it never makes the cluster Degraded. Absent while spec.backup is not set.
	ConditionBackupHealthy = "BackupHealthy"
)

// Condition reasons. Messages carry the details and the next step for the user.
const (
	// Available.
	ReasonQuorumAvailable = "QuorumAvailable"
	ReasonNoActiveNode    = "NoActiveNode"
	ReasonServersNotReady = "ServersNotReady"
	ReasonNotProvisioned  = "NotProvisioned"

	// Upgrading.
	ReasonNoUpgrade        = "NoUpgrade"
	ReasonUpgradeRunning   = "UpgradeInProgress"
	ReasonUpgradePending   = "PreChecksPending"
	ReasonUpgradeCompleted = "UpgradeCompleted"
	ReasonUpgradeHalted    = "UpgradeHalted"
	// ReasonUpgradeAborted: the user set the version back while the upgrade could still be
	// undone, and the cluster is as it was before the upgrade.
	ReasonUpgradeAborted = "UpgradeAborted"

	// Degraded.
	ReasonAsExpected       = "AsExpected"
	ReasonInvalidSpec      = "InvalidSpec"
	ReasonDowngradeBlocked = "DowngradeBlocked"
	ReasonUpgradeFailed    = "UpgradeFailed"
	ReasonReconcileError   = "ReconcileError"

	// ScalingDown.
	ReasonScaleDownInProgress = "ScaleDownInProgress"
	ReasonScaleDownBlocked    = "ScaleDownBlocked"
	ReasonScaleDownCompleted  = "ScaleDownCompleted"
	ReasonNoScaleDown         = "NoScaleDown"
	// BackupHealthy.
	ReasonBackupSucceeded = "BackupSucceeded"
	ReasonBackupFailed    = "BackupFailed"
	ReasonBackupPending   = "BackupPending"
	ReasonBackupInvalid   = "InvalidBackupSpec"

	// Paused.
	ReasonPausedByUser = "PausedByUser"
	ReasonNotPaused    = "NotPaused"

	// ServiceAccountKeysSynced.
	ReasonKeysSynced = "KeysSynced"
	// ReasonKeysUpdateFailed: OpenBao could not be given the API server's keys this time
	// (no server reachable, login or write failed); the operator retries.
	ReasonKeysUpdateFailed = "KeysUpdateFailed"
	// ReasonKeysPolicyMissing: OpenBao refused the operator the update of its JWT auth keys,
	// as in clusters created before the operator's policy allowed it; a person must add the
	// policy (see the README).
	ReasonKeysPolicyMissing = "KeysPolicyMissing"
)
