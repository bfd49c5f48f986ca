// Package executor is the program upgrade Jobs run: `manager executor <action> [flags]`.
// Each Job logs in to OpenBao with the JWT auth method using its projected service-account
// token, performs one action, prints what it did and exits non-zero with a message when it
// failed. Every action is idempotent, so that a Job that is retried, or re-created after an
// operator restart, never does harm:
//
//   - step-down moves leadership away from one server and waits until another server is
//     active. A server that is not active is left alone ("already moved").
//   - snapshot saves a Raft snapshot to a file. An existing complete file is kept.
//   - backup streams a Raft snapshot to the snapshot volume or to S3-compatible object
//     storage, records its size and SHA-256, applies retention and reports the result as
//     JSON in the container's termination message. A retried Job writes the same name again.
//   - restore checks a snapshot (checksum, completeness, the cluster's seal key) without
//     changing anything, then installs it through the active node and reports the result as
//     JSON in the termination message. A retried Job installs the same snapshot again.
//
// The Job's service account has no Kubernetes permissions; everything the executor may do
// is granted by the OpenBao policy of its JWT role. The token is never printed.
package executor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/openbao-operator/openbao-operator/pkg/backup"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// Actions and the default timeouts of the whole action, login included, as the operator's
// Jobs name and bound them (pkg/resources).
const (
	ActionStepDown = string(resources.ActionStepDown)
	ActionSnapshot = string(resources.ActionSnapshot)
	ActionBackup   = string(resources.ActionBackup)
	ActionRestore  = string(resources.ActionRestore)

	DefaultStepDownTimeout = resources.StepDownTimeout
	DefaultSnapshotTimeout = resources.SnapshotTimeout
	DefaultBackupTimeout   = resources.BackupTimeout
	DefaultRestoreTimeout  = resources.RestoreTimeout
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// pollInterval is how often the executor looks again while it waits for OpenBao.
const pollInterval = 250 * time.Millisecond

// Options are the parsed flags of one action.
type Options struct {
	Address       string
	CAFile        string
	TLSServerName string
	TokenFile     string
	Role          string
	AuthMount     string
	NodeID        string
	Out           string
	Timeout       time.Duration
	Backup        BackupOptions
	Restore       RestoreOptions
}

// runner carries what an action needs besides its options; tests replace newClient.
type runner struct {
	opts      Options
	caPEM     []byte
	newClient openbao.NewFunc
	stdout    io.Writer
	// stepDownResendAfter is how long the executor waits for leadership to move before it
	// sends the step-down again.
	stepDownResendAfter time.Duration
	// maxStepDowns bounds the step-down requests of one run.
	maxStepDowns int
}

// Main runs `executor <action> [flags]` and returns the process's exit code: 0 done (or
// nothing to do), 1 failed, 2 wrong usage.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, usage)
		return exitUsage
	}
	action := args[0]
	opts, err := parseFlags(action, args[1:], stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitUsage
		}
		fmt.Fprintf(stderr, "executor %s: %v\n", action, err)
		if action == ActionRestore {
			// A restore with bad flags is a refusal the operator reads from the result.
			if werr := refuseRestore(opts.Restore, backup.ReasonInvalidRequest, err); werr != nil {
				fmt.Fprintf(stderr, "executor %s: %v\n", action, werr)
			}
			return exitFailed
		}
		return exitUsage
	}
	ca, err := os.ReadFile(opts.CAFile)
	if err != nil {
		fmt.Fprintf(stderr, "executor %s: read the CA certificate: %v\n", action, err)
		if action == ActionRestore {
			if werr := refuseRestore(opts.Restore, backup.ReasonInvalidRequest, fmt.Errorf("read the CA certificate: %w", err)); werr != nil {
				fmt.Fprintf(stderr, "executor %s: %v\n", action, werr)
			}
		}
		return exitFailed
	}
	r := &runner{
		opts:                opts,
		caPEM:               ca,
		newClient:           openbao.New,
		stdout:              stdout,
		stepDownResendAfter: 10 * time.Second,
		maxStepDowns:        3,
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	switch action {
	case ActionStepDown:
		err = r.stepDown(ctx)
	case ActionSnapshot:
		err = r.snapshot(ctx)
	case ActionBackup:
		err = r.backupRun(ctx)
	case ActionRestore:
		err = r.restoreRun(ctx)
	}
	if err != nil {
		fmt.Fprintf(stderr, "executor %s: %v\n", action, err)
		return exitFailed
	}
	return exitOK
}

const usage = `usage: manager executor <action> [flags]

actions:
  step-down  move leadership away from the server at --address (node --node-id)
  snapshot   save a Raft snapshot of the cluster to --out
  backup     stream a Raft snapshot to the snapshot volume (--dir) or to S3 (--s3-endpoint)
  restore    check a snapshot (--source) against its checksum and the seal key, then install it

run "manager executor <action> -h" for the flags of an action`

func parseFlags(action string, args []string, stderr io.Writer) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("executor "+action, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Address, "address", "", "API URL of the OpenBao server, such as https://<pod>.<headless service>.<namespace>.svc:8200 (required)")
	fs.StringVar(&o.CAFile, "ca-file", "", "CA certificate that signed the server's certificate (required)")
	fs.StringVar(&o.TLSServerName, "tls-server-name", "", "Name to check the server's certificate against, when it differs from the host of --address")
	fs.StringVar(&o.TokenFile, "token-file", "", "Projected service-account token to log in with; read again at each login attempt (required)")
	defaultRole := resources.DefaultUpgradeRole
	switch action {
	case ActionBackup:
		defaultRole = resources.DefaultBackupRole
	case ActionRestore:
		defaultRole = resources.DefaultRestoreRole
	}
	fs.StringVar(&o.Role, "role", defaultRole, "JWT auth role to log in as")
	fs.StringVar(&o.AuthMount, "auth-mount", resources.JWTAuthMount, "Mount path of the JWT auth method")
	switch action {
	case ActionStepDown:
		fs.StringVar(&o.NodeID, "node-id", "", "Raft node ID (the pod name) of the server at --address (required)")
		fs.DurationVar(&o.Timeout, "timeout", DefaultStepDownTimeout, "Give up after this long, login included")
	case ActionSnapshot:
		fs.StringVar(&o.Out, "out", "", "File to save the snapshot to; <out>.partial is written first (required)")
		fs.DurationVar(&o.Timeout, "timeout", DefaultSnapshotTimeout, "Give up after this long, login included")
	case ActionBackup:
		b := &o.Backup
		fs.StringVar(&b.Cluster, "cluster", "", "Name of the OpenBaoCluster; snapshots are named <cluster>-<time>.snap (required)")
		fs.StringVar(&b.Name, "name", "", "Name of the snapshot to write, <cluster>-<YYYYMMDDTHHMMSSZ>.snap, or <cluster>-pre-upgrade-<version>-<revision>.snap, which retention never deletes (required)")
		fs.StringVar(&b.ResultFile, "result-file", "", "File to write the JSON result to, such as /dev/termination-log")
		fs.StringVar(&b.Dir, "dir", "", "Directory of the snapshot volume to write to, when --s3-endpoint is not set")
		fs.StringVar(&b.Claim, "claim", "", "PersistentVolumeClaim mounted at --dir's volume, for the reported location")
		fs.StringVar(&b.S3Endpoint, "s3-endpoint", "", "URL of the S3 API; writes to object storage instead of --dir")
		fs.StringVar(&b.S3Bucket, "s3-bucket", "", "Bucket")
		fs.StringVar(&b.S3Prefix, "s3-prefix", "", "Prefix of the cluster's objects, <prefix><namespace>/<cluster>/")
		fs.StringVar(&b.S3Region, "s3-region", "", "Region of the bucket (us-east-1 when empty)")
		fs.BoolVar(&b.S3PathStyle, "s3-path-style", false, "Address the bucket as <endpoint>/<bucket>")
		fs.StringVar(&b.S3CAFile, "s3-ca-file", "", "CA bundle of the endpoint's certificate")
		fs.StringVar(&b.S3CredentialsDir, "s3-credentials-dir", "", "Directory with the files AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		fs.IntVar(&b.KeepLast, "keep-last", 0, "Retention: keep the newest N backups (0: no such rule)")
		fs.DurationVar(&b.MaxAge, "max-age", 0, "Retention: keep the backups younger than this (0: no such rule)")
		fs.DurationVar(&o.Timeout, "timeout", DefaultBackupTimeout, "Give up after this long, login included")
	case ActionRestore:
		x := &o.Restore
		fs.StringVar(&x.Cluster, "cluster", "", "Name of the OpenBaoCluster restored into (required)")
		fs.StringVar(&x.Source, "source", "", "Snapshot to restore: s3://<bucket>/<key> or pvc://<claim>/<path inside the volume> (required)")
		fs.StringVar(&x.SHA256, "sha256", "", "Expected SHA-256 of the snapshot; default: the one recorded with the backup (<file>.sha256 or the object's sha256 tag)")
		fs.BoolVar(&x.Force, "force", false, "Restore a snapshot of another cluster (snapshot-force); the seal key is checked all the same")
		fs.StringVar(&x.SealKeyFile, "seal-key-file", "", "The cluster's static seal key file (required)")
		fs.StringVar(&x.SealKeyID, "seal-key-id", "", "ID of the cluster's static seal key (required)")
		fs.StringVar(&x.SnapshotDir, "snapshot-dir", "", "Where the claim of a pvc:// source is mounted")
		fs.StringVar(&x.ResultFile, "result-file", "", "File to write the JSON result to, such as /dev/termination-log")
		fs.StringVar(&x.S3Endpoint, "s3-endpoint", "", "URL of the S3 API of an s3:// source")
		fs.StringVar(&x.S3Bucket, "s3-bucket", "", "Bucket; when set, it must be the bucket of --source")
		fs.StringVar(&x.S3Region, "s3-region", "", "Region of the bucket (us-east-1 when empty)")
		fs.BoolVar(&x.S3PathStyle, "s3-path-style", false, "Address the bucket as <endpoint>/<bucket>")
		fs.StringVar(&x.S3CAFile, "s3-ca-file", "", "CA bundle of the endpoint's certificate")
		fs.StringVar(&x.S3CredentialsDir, "s3-credentials-dir", "", "Directory with the files AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		fs.DurationVar(&o.Timeout, "timeout", DefaultRestoreTimeout, "Give up after this long, login included")
	default:
		return o, fmt.Errorf("unknown action %q (want %s, %s, %s or %s)", action, ActionStepDown, ActionSnapshot, ActionBackup, ActionRestore)
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	var missing []string
	for name, v := range map[string]string{"--address": o.Address, "--ca-file": o.CAFile, "--token-file": o.TokenFile, "--role": o.Role, "--auth-mount": o.AuthMount} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if action == ActionSnapshot && o.Out == "" {
		missing = append(missing, "--out")
	}
	if action == ActionStepDown && o.NodeID == "" {
		missing = append(missing, "--node-id")
	}
	if action == ActionBackup {
		b := o.Backup
		for name, v := range map[string]string{"--cluster": b.Cluster, "--name": b.Name} {
			if v == "" {
				missing = append(missing, name)
			}
		}
		if b.S3Endpoint == "" && b.Dir == "" {
			missing = append(missing, "--dir or --s3-endpoint")
		}
		if b.S3Endpoint != "" && b.S3Bucket == "" {
			missing = append(missing, "--s3-bucket")
		}
		if b.S3Endpoint != "" && b.S3CredentialsDir == "" {
			missing = append(missing, "--s3-credentials-dir")
		}
	}
	if action == ActionRestore {
		missing = append(missing, missingRestoreFlags(o.Restore)...)
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return o, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	if o.Timeout <= 0 {
		return o, fmt.Errorf("--timeout must be positive, not %s", o.Timeout)
	}
	if action == ActionBackup {
		_, scheduled := backup.ParseSnapshotName(o.Backup.Cluster, o.Backup.Name)
		if !scheduled && !backup.IsPreUpgradeName(o.Backup.Cluster, o.Backup.Name) {
			return o, fmt.Errorf("--name %q is not a snapshot name of cluster %q (<cluster>-<YYYYMMDDTHHMMSSZ>.snap, or <cluster>-pre-upgrade-<version>-<revision>.snap before an upgrade)", o.Backup.Name, o.Backup.Cluster)
		}
		if o.Backup.KeepLast < 0 || o.Backup.MaxAge < 0 {
			return o, errors.New("--keep-last and --max-age must not be negative")
		}
	}
	if action == ActionRestore {
		if err := validateRestoreFlags(o.Restore); err != nil {
			return o, err
		}
	}
	u, err := url.Parse(o.Address)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return o, fmt.Errorf("--address %q is not an http(s) URL", o.Address)
	}
	return o, nil
}

func (r *runner) printf(format string, args ...any) {
	fmt.Fprintf(r.stdout, format+"\n", args...)
}

// client is a client of the server at --address.
func (r *runner) client() (openbao.Client, error) {
	return r.newClient(openbao.Config{
		Address:       r.opts.Address,
		CACertPEM:     r.caPEM,
		TLSServerName: r.opts.TLSServerName,
		Timeout:       10 * time.Second,
	})
}

// login logs cl in with the JWT of the token file. It tries again after errors that may
// pass (server unreachable, sealed, electing a leader) until ctx ends, and reads the file
// at every attempt because the kubelet refreshes projected tokens.
func (r *runner) login(ctx context.Context, cl openbao.Client) error {
	backoff := pollInterval
	for {
		jwt, err := readToken(r.opts.TokenFile)
		if err != nil {
			return err
		}
		err = cl.LoginJWT(ctx, r.opts.AuthMount, r.opts.Role, jwt)
		if err == nil {
			r.printf("logged in to %s as role %s (auth mount %s)", r.opts.Address, r.opts.Role, r.opts.AuthMount)
			return nil
		}
		if !openbao.IsTransient(err) {
			return fmt.Errorf("log in to %s as role %s (auth mount %s): %w", r.opts.Address, r.opts.Role, r.opts.AuthMount, err)
		}
		if werr := sleep(ctx, backoff); werr != nil {
			return fmt.Errorf("log in to %s as role %s (auth mount %s): gave up: %w", r.opts.Address, r.opts.Role, r.opts.AuthMount, err)
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// readToken reads the projected token; only its length ever reaches a message.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read the token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("the token file %s is empty", path)
	}
	return tok, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retry calls f every pollInterval until it returns nil or a non-transient error, or ctx
// ends; then it returns the last error.
func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil || !openbao.IsTransient(err) {
			return err
		}
		if sleep(ctx, pollInterval) != nil {
			return err
		}
	}
}
