package resources

import "time"

// Restores run the executor's restore action in a Job that logs in with a JWT role that may
// only install a Raft snapshot.
const (
	ActionRestore ExecutorAction = "restore"
	// RestoreTimeout bounds the restore Job's work: reading the snapshot twice (checksum and
	// seal-key check, then the restore itself) and installing it.
	RestoreTimeout = 30 * time.Minute

	// DefaultRestoreRole is the JWT role (and policy) of restore Jobs.
	DefaultRestoreRole = "openbao-restore"
	// RestoreAudience is the audience of restore Jobs' projected tokens. It differs from the
	// upgrade and backup roles', so that no other Job's token can log in to the restore role.
	RestoreAudience = "openbao-restore"

	// ComponentRestore labels restore Jobs.
	ComponentRestore = "restore-job"
)

// RestorePolicy may only install a Raft snapshot, forced or not.
const RestorePolicy = `# Install a Raft snapshot; nothing else.
path "sys/storage/raft/snapshot" {
  capabilities = ["update"]
}
path "sys/storage/raft/snapshot-force" {
  capabilities = ["update"]
}
`
