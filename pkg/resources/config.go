package resources

// OpenBao server configuration.
//
// Behaviours of OpenBao this file relies on, measured with the official 2.6.2 and 2.7.2
// binaries (raft storage, static seal, TLS, 1 and 3 nodes on loopback):
//
//   - A node whose configuration has an `initialize` stanza and whose storage is empty
//     bootstraps a Raft cluster of its own and self-initializes right away: it does not try
//     its retry_join peers first, even when they already form an initialized cluster. Three
//     nodes started with the same stanza made three clusters with three cluster IDs. So the
//     self-initialization requests live in a file of their own (RenderSelfInitConfig) that
//     only the first pod loads, only while its data directory is empty (ServerCommand), and
//     the operator renders it only until the cluster has been initialized once.
//   - A node without the stanza and with empty storage waits in retry_join until a peer
//     answers, then joins it.
//   - Restarting a node on its existing data with the stanza still loaded does not run the
//     requests again ("initialize" runs only when the barrier is initialized).
//   - `bao server` merges several -config flags.
//   - The root token that self-initialization uses is generated, used and revoked inside the
//     server; it is never printed. Each request's failure stops self-initialization.
//   - api_addr, cluster_addr and the Raft node_id are read from BAO_API_ADDR,
//     BAO_CLUSTER_ADDR and BAO_RAFT_NODE_ID, so one configuration serves every pod.
//   - `disable_mlock` is an unknown field in 2.7 (warning only): it is not rendered.
//   - A single node becomes active ~9-10 s after start (Raft's first election timeout).

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// SelfInitConfigFile is the key, next to ConfigFile, of the self-initialization stanzas.
const SelfInitConfigFile = "self-init.hcl"

// Names inside OpenBao of what self-initialization creates for the operator.
const (
	// JWTAuthMount is where the JWT auth method that trusts the Kubernetes issuer is mounted.
	JWTAuthMount = "jwt"
	// DefaultUpgradeRole is the JWT role (and policy) of the upgrade executor.
	DefaultUpgradeRole = "openbao-upgrade"
	// OperatorRole is the JWT role (and policy) of the operator itself.
	OperatorRole = "openbao-operator"
	// OperatorJWTKeysPolicy is the operator role's second policy: it may replace the JWT
	// auth method's validation keys, and nothing else (JWTKeysPolicy).
	OperatorJWTKeysPolicy = "openbao-operator-jwt-keys"
	// DefaultJWTTokenTTL bounds the tokens the Jobs' roles (upgrade, backup) hand out: an
	// upgrade step or a backup needs minutes, not hours; their tokens are not renewed.
	DefaultJWTTokenTTL = "10m"
	// DefaultOperatorTokenTTL is the lifetime of the operator role's tokens. The operator
	// keeps one token per cluster and renews it (renew-self) when two thirds of this have
	// passed, so a cluster sees one login per DefaultOperatorTokenMaxTTL, not one per pass.
	DefaultOperatorTokenTTL = "1h"
	// DefaultOperatorTokenMaxTTL caps the renewals of an operator token: past it the
	// operator logs in again.
	DefaultOperatorTokenMaxTTL = "24h"
)

// Default listener addresses inside a pod.
const (
	DefaultListenAddress        = "0.0.0.0:8200"
	DefaultClusterListenAddress = "0.0.0.0:8201"
)

// ConfigParams are the inputs of an OpenBao server configuration. The controller fills them
// from the cluster's spec; tests fill them with loopback addresses.
type ConfigParams struct {
	// ClusterName is the OpenBaoCluster's name; it is also OpenBao's cluster_name.
	ClusterName string
	// Namespace of the cluster.
	Namespace string
	// StatefulSet whose pods are the Raft peers (<StatefulSet>-<i>); defaults to ClusterName.
	StatefulSet string
	// Replicas is the number of pods that retry_join lists when JoinTargets is empty.
	Replicas int32
	// HeadlessService gives each pod its DNS name <pod>.<HeadlessService>.<Namespace>.svc.
	HeadlessService string

	// TLSCertFile, TLSKeyFile and TLSCAFile are the mounted listener certificate, key and CA.
	TLSCertFile, TLSKeyFile, TLSCAFile string
	// DataDir is the Raft storage path.
	DataDir string
	// PerformanceMultiplier scales Raft's timing (performance_multiplier); 0 leaves
	// OpenBao's own default (5, meant for slow networks).
	PerformanceMultiplier int32
	// SealKeyFile holds the 32-byte static seal key; SealKeyID names it.
	SealKeyFile, SealKeyID string

	// NonVoter makes the servers join as non-voters that stay so until promoted
	// (retry_join_as_non_voter): blue/green builds the new servers this way.
	NonVoter bool
	// JoinTargets replaces the default peers (this StatefulSet's pods): blue/green points the
	// new servers at the old ones.
	JoinTargets []JoinTarget

	// ListenAddress and ClusterListenAddress default to 0.0.0.0:8200 and 0.0.0.0:8201.
	ListenAddress, ClusterListenAddress string

	// JWT configures the JWT auth method and the operator's roles.
	JWT JWTInit
	// SelfInit are the user's requests, applied after the operator's own.
	SelfInit []InitRequest
}

// JoinTarget is one peer that a new server asks to join.
type JoinTarget struct {
	// APIAddr is the peer's API address, https://<host>:8200.
	APIAddr string
	// TLSServerName is the name the peer's certificate is checked against; defaults to the
	// host of APIAddr.
	TLSServerName string
}

// JWTInit configures the JWT auth method that trusts the Kubernetes service-account issuer,
// and the roles of the upgrade executor and of the operator.
type JWTInit struct {
	// Issuer is the Kubernetes service-account issuer (bound_issuer).
	Issuer string
	// ValidationPubKeysPEM are the issuer's public keys, PEM encoded.
	ValidationPubKeysPEM []string

	// UpgradeRole names the executor's role and policy; defaults to DefaultUpgradeRole.
	UpgradeRole string
	// UpgradeAudience is the audience the executor's tokens are requested for.
	UpgradeAudience string
	// UpgradeServiceAccount defaults to <cluster>-upgrade-serviceaccount in Namespace.
	UpgradeServiceAccount string

	// BackupAudience is the audience of backup Jobs' tokens; defaults to BackupAudience.
	// Backup Jobs run as UpgradeServiceAccount and log in to DefaultBackupRole.
	BackupAudience string

	// RestoreAudience is the audience of restore Jobs' tokens; defaults to RestoreAudience.
	// Restore Jobs run as UpgradeServiceAccount and log in to DefaultRestoreRole.
	RestoreAudience string

	// OperatorSubject is the operator's service account,
	// system:serviceaccount:<namespace>:<name>.
	OperatorSubject string
	// OperatorAudience is the audience of the operator's tokens.
	OperatorAudience string

	// TokenTTL of the Jobs' roles' tokens (upgrade, backup); defaults to
	// DefaultJWTTokenTTL. It is also their maximum: these tokens are not renewed.
	TokenTTL string
	// OperatorTokenTTL and OperatorTokenMaxTTL are the lifetime and the maximum lifetime
	// through renewals of the operator role's tokens; default DefaultOperatorTokenTTL and
	// DefaultOperatorTokenMaxTTL.
	OperatorTokenTTL    string
	OperatorTokenMaxTTL string
}

// InitRequest is one user request of self-initialization.
type InitRequest struct {
	// Name must match ^[A-Za-z_][A-Za-z0-9_-]*$ and be unique.
	Name string
	// Path is the API path without /v1/.
	Path string
	// Operation is create, update (default), delete or read.
	Operation string
	// Data is the request body: strings, booleans, numbers, lists and maps.
	Data map[string]any
	// AllowFailure lets self-initialization go on when this request fails.
	AllowFailure bool
}

// UpgradePolicy is what the upgrade executor may do: move leadership and look at the cluster.
const UpgradePolicy = `# Move leadership away from a server before it is replaced.
path "sys/step-down" {
  capabilities = ["update", "sudo"]
}

# Save a snapshot before the first server is touched.
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}

# Check that the other servers are healthy voters before stepping down.
path "sys/storage/raft/configuration" {
  capabilities = ["read"]
}
path "sys/storage/raft/autopilot/state" {
  capabilities = ["read"]
}
`

// OperatorPolicy is what the operator may do: observe the cluster and change Raft membership
// for blue/green upgrades.
const OperatorPolicy = `# Observe membership, health and versions.
path "sys/storage/raft/configuration" {
  capabilities = ["read"]
}
path "sys/storage/raft/autopilot/state" {
  capabilities = ["read"]
}
path "sys/version-history" {
  capabilities = ["list", "read"]
}

# Blue/green: promote the new servers, then remove the old ones.
path "sys/storage/raft/promote" {
  capabilities = ["update"]
}
path "sys/storage/raft/remove-peer" {
  capabilities = ["update"]
}
`

// JWTKeysPolicy is the policy that lets the operator follow a rotation of the Kubernetes
// service-account signing keys: it may replace auth/jwt/config, but only with bound_issuer
// set to issuer and jwt_validation_pubkeys; no other parameter is allowed.
//
// A write of auth/jwt/config replaces the whole configuration: a parameter left out is reset
// (an empty bound_issuer would let tokens of any issuer in). So both parameters are required,
// and the issuer is pinned to the value the cluster was created with: a token of this policy
// can change which keys are trusted, not whose tokens they are. There is no read capability:
// OpenBao applies required_parameters to reads too (a read carries no parameters and is
// refused, measured with 2.7.2), so the operator records what it wrote in the status instead.
func JWTKeysPolicy(issuer string) (string, error) {
	if issuer == "" {
		return "", errors.New("JWT keys policy: the issuer is required")
	}
	var b hclWriter
	b.line("# Follow a rotation of the Kubernetes service-account signing keys: replace the trusted")
	b.line("# keys, never the issuer, nothing else of the JWT auth method.")
	b.open("path", "auth/"+JWTAuthMount+"/config")
	b.attr("capabilities", []string{"update"})
	b.attr("required_parameters", []string{"bound_issuer", "jwt_validation_pubkeys"})
	b.open("allowed_parameters")
	b.attr("bound_issuer", []string{issuer})
	b.attr("jwt_validation_pubkeys", []string{})
	b.close()
	b.close()
	if b.err != nil {
		return "", b.err
	}
	return b.String(), nil
}

// RenderConfig renders the configuration every server of the cluster loads. It has no
// self-initialization stanzas (see RenderSelfInitConfig) and nothing pod-specific: each pod
// sets BAO_API_ADDR, BAO_CLUSTER_ADDR and BAO_RAFT_NODE_ID.
func RenderConfig(p ConfigParams) (string, error) {
	p = withConfigDefaults(p)
	if err := validateConfigParams(p); err != nil {
		return "", err
	}
	targets := p.JoinTargets
	if len(targets) == 0 {
		targets = DefaultJoinTargets(p)
	}

	var b hclWriter
	b.line("# Rendered by the OpenBao operator for %s/%s. Do not edit: changes are overwritten.", p.Namespace, p.ClusterName)
	b.line("# api_addr, cluster_addr and the Raft node_id come from BAO_API_ADDR, BAO_CLUSTER_ADDR")
	b.line("# and BAO_RAFT_NODE_ID, set per pod.")
	b.attr("cluster_name", p.ClusterName)
	b.attr("ui", false)
	b.blank()
	b.open("listener", "tcp")
	b.attr("address", p.ListenAddress)
	b.attr("cluster_address", p.ClusterListenAddress)
	b.attr("tls_cert_file", p.TLSCertFile)
	b.attr("tls_key_file", p.TLSKeyFile)
	b.attr("tls_min_version", "tls12")
	b.close()
	b.blank()
	b.open("storage", "raft")
	b.attr("path", p.DataDir)
	if p.PerformanceMultiplier > 0 {
		b.attr("performance_multiplier", p.PerformanceMultiplier)
	}
	if p.NonVoter {
		b.line("# Stay a non-voter until promoted explicitly.")
		b.attr("retry_join_as_non_voter", true)
	}
	for _, t := range targets {
		b.open("retry_join")
		b.attr("leader_api_addr", t.APIAddr)
		b.attr("leader_ca_cert_file", p.TLSCAFile)
		b.attr("leader_tls_servername", t.TLSServerName)
		b.close()
	}
	b.close()
	b.blank()
	b.open("seal", "static")
	b.attr("current_key_id", p.SealKeyID)
	b.attr("current_key", "file://"+p.SealKeyFile)
	b.close()
	b.blank()
	b.open("telemetry")
	b.attr("prometheus_retention_time", "24h")
	b.attr("disable_hostname", true)
	b.close()
	if b.err != nil {
		return "", b.err
	}
	return b.String(), nil
}

// RenderSelfInitConfig renders the `initialize` stanzas that set up a new cluster on its
// first start, in this order: the JWT auth method trusting the Kubernetes issuer, the upgrade
// executor's policy and role, the backup Jobs' policy and role, the restore Jobs' policy and
// role, the operator's policy and role, then the user's requests.
//
// Only the first pod of a cluster that has never been initialized may load it: a node with
// these stanzas and empty storage founds a cluster of its own instead of joining its peers.
func RenderSelfInitConfig(p ConfigParams) (string, error) {
	p = withConfigDefaults(p)
	if err := validateConfigParams(p); err != nil {
		return "", err
	}
	if err := validateJWT(p.JWT); err != nil {
		return "", err
	}
	if err := validateInitRequests(p.SelfInit); err != nil {
		return "", err
	}
	j := p.JWT
	// The cluster's own Job service account, and those of the namespace's other clusters.
	jobSubjects := []string{"system:serviceaccount:" + p.Namespace + ":" + j.UpgradeServiceAccount, JobSubjects(p.Namespace)}
	keysPolicy, err := JWTKeysPolicy(j.Issuer)
	if err != nil {
		return "", err
	}

	var b hclWriter
	b.line("# Self-initialization of %s/%s, rendered by the OpenBao operator. OpenBao runs it once,", p.Namespace, p.ClusterName)
	b.line("# when the first server starts on empty storage; no root token leaves the server.")
	b.open("initialize", "operator_jwt_auth")
	b.request("enable_jwt", "update", "sys/auth/"+JWTAuthMount, map[string]any{
		"type":        "jwt",
		"description": "Kubernetes service accounts of the OpenBao operator and its upgrade jobs",
	}, false)
	b.request("configure_jwt", "update", "auth/"+JWTAuthMount+"/config", map[string]any{
		"bound_issuer":           j.Issuer,
		"jwt_validation_pubkeys": j.ValidationPubKeysPEM,
	}, false)
	b.close()
	b.blank()
	b.open("initialize", "operator_upgrade_role")
	b.request("upgrade_policy", "update", "sys/policies/acl/"+j.UpgradeRole, map[string]any{
		"policy": UpgradePolicy,
	}, false)
	b.request("upgrade_role", "update", "auth/"+JWTAuthMount+"/role/"+j.UpgradeRole, jobRole(j.UpgradeAudience, jobSubjects, j.TokenTTL, j.UpgradeRole), false)
	b.close()
	b.blank()
	b.open("initialize", "operator_backup_role")
	b.request("backup_policy", "update", "sys/policies/acl/"+DefaultBackupRole, map[string]any{
		"policy": BackupPolicy,
	}, false)
	b.request("backup_role", "update", "auth/"+JWTAuthMount+"/role/"+DefaultBackupRole, jobRole(j.BackupAudience, jobSubjects, j.TokenTTL, DefaultBackupRole), false)
	b.close()
	b.blank()
	// The restore role is for the restore executor alone: it may overwrite all of the
	// cluster's data, so no other Job, person or policy may ever log in with it or be granted
	// RestorePolicy. Its audience differs from every other Job's, so that neither the upgrade
	// nor the backup Jobs' tokens (same service account) can log in to it.
	b.open("initialize", "operator_restore_role")
	b.request("restore_policy", "update", "sys/policies/acl/"+DefaultRestoreRole, map[string]any{
		"policy": RestorePolicy,
	}, false)
	b.request("restore_role", "update", "auth/"+JWTAuthMount+"/role/"+DefaultRestoreRole, jobRole(j.RestoreAudience, jobSubjects, j.TokenTTL, DefaultRestoreRole), false)
	b.close()
	b.blank()
	b.open("initialize", "operator_role")
	b.request("operator_policy", "update", "sys/policies/acl/"+OperatorRole, map[string]any{
		"policy": OperatorPolicy,
	}, false)
	b.request("operator_jwt_keys_policy", "update", "sys/policies/acl/"+OperatorJWTKeysPolicy, map[string]any{
		"policy": keysPolicy,
	}, false)
	b.request("operator_role", "update", "auth/"+JWTAuthMount+"/role/"+OperatorRole, jwtRole(j.OperatorAudience, j.OperatorSubject, j.OperatorTokenTTL, j.OperatorTokenMaxTTL, OperatorRole, OperatorJWTKeysPolicy), false)
	b.close()
	if len(p.SelfInit) > 0 {
		b.blank()
		b.open("initialize", "user")
		for _, r := range p.SelfInit {
			op := r.Operation
			if op == "" {
				op = "update"
			}
			b.request(r.Name, op, r.Path, r.Data, r.AllowFailure)
		}
		b.close()
	}
	if b.err != nil {
		return "", b.err
	}
	return b.String(), nil
}

// ServerCommand is the server container's command. It loads the self-initialization file
// only on the pod with ordinal 0, only when that file is not empty and only while the data
// directory holds no Raft data, so that no other pod, and no restarted pod, ever founds a
// second cluster. The operator empties the file once the cluster has been initialized.
func ServerCommand(configDir, dataDir string) []string {
	script := `set -e
set -- -config=` + shellQuote(configDir+"/"+ConfigFile) + `
if [ "${POD_NAME##*-}" = "0" ] && [ -s ` + shellQuote(configDir+"/"+SelfInitConfigFile) + ` ] && [ ! -e ` + shellQuote(dataDir+"/vault.db") + ` ]; then
  echo "first start of the cluster's first server: loading self-initialization"
  set -- "$@" -config=` + shellQuote(configDir+"/"+SelfInitConfigFile) + `
fi
exec bao server "$@"
`
	return []string{"/bin/sh", "-c", script}
}

// DefaultJoinTargets are the pods of the StatefulSet, reached through the headless Service.
func DefaultJoinTargets(p ConfigParams) []JoinTarget {
	p = withConfigDefaults(p)
	out := make([]JoinTarget, 0, p.Replicas)
	for i := range int(p.Replicas) {
		host := fmt.Sprintf("%s-%d.%s.%s.svc", p.StatefulSet, i, p.HeadlessService, p.Namespace)
		out = append(out, JoinTarget{APIAddr: fmt.Sprintf("https://%s:%d", host, APIPort), TLSServerName: host})
	}
	return out
}

// JobSubjects is the subject pattern the Job roles accept: the upgrade service account of any
// cluster in namespace (system:serviceaccount:<namespace>:*-upgrade-serviceaccount). A
// cluster that restores another cluster's snapshot of the same namespace (a rollback to a
// new cluster) gets that cluster's roles with the data; its own Jobs must still log in. The
// pattern grants no one more than before: these service accounts have no RBAC, and whoever
// may create pods in the namespace may run them as any of its service accounts already.
// Each role still requires its own audience.
func JobSubjects(namespace string) string {
	return "system:serviceaccount:" + namespace + ":*" + upgradeServiceAccountSuffix
}

// jobRole is a Job role: short-lived tokens for the service accounts whose subject matches
// one of subjects (glob patterns).
func jobRole(audience string, subjects []string, ttl string, policies ...string) map[string]any {
	r := jwtRole(audience, "", ttl, ttl, policies...)
	delete(r, "bound_subject")
	r["bound_claims_type"] = "glob"
	r["bound_claims"] = map[string]any{"sub": subjects}
	return r
}

func jwtRole(audience, subject, ttl, maxTTL string, policies ...string) map[string]any {
	return map[string]any{
		"role_type":       "jwt",
		"bound_audiences": []string{audience},
		"bound_subject":   subject,
		"user_claim":      "sub",
		"token_policies":  policies,
		"token_ttl":       ttl,
		"token_max_ttl":   maxTTL,
	}
}

func withConfigDefaults(p ConfigParams) ConfigParams {
	if p.StatefulSet == "" {
		p.StatefulSet = p.ClusterName
	}
	if p.ListenAddress == "" {
		p.ListenAddress = DefaultListenAddress
	}
	if p.ClusterListenAddress == "" {
		p.ClusterListenAddress = DefaultClusterListenAddress
	}
	if p.JWT.UpgradeRole == "" {
		p.JWT.UpgradeRole = DefaultUpgradeRole
	}
	if p.JWT.UpgradeServiceAccount == "" {
		p.JWT.UpgradeServiceAccount = p.ClusterName + upgradeServiceAccountSuffix
	}
	if p.JWT.BackupAudience == "" {
		p.JWT.BackupAudience = BackupAudience
	}
	if p.JWT.RestoreAudience == "" {
		p.JWT.RestoreAudience = RestoreAudience
	}
	if p.JWT.TokenTTL == "" {
		p.JWT.TokenTTL = DefaultJWTTokenTTL
	}
	if p.JWT.OperatorTokenTTL == "" {
		p.JWT.OperatorTokenTTL = DefaultOperatorTokenTTL
	}
	if p.JWT.OperatorTokenMaxTTL == "" {
		p.JWT.OperatorTokenMaxTTL = DefaultOperatorTokenMaxTTL
	}
	targets := make([]JoinTarget, len(p.JoinTargets))
	for i, t := range p.JoinTargets {
		if t.TLSServerName == "" {
			t.TLSServerName = hostOf(t.APIAddr)
		}
		targets[i] = t
	}
	p.JoinTargets = targets
	return p
}

func hostOf(addr string) string {
	h := strings.TrimPrefix(strings.TrimPrefix(addr, "https://"), "http://")
	if i := strings.IndexByte(h, '/'); i >= 0 {
		h = h[:i]
	}
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i >= 0 {
			return h[1:i]
		}
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	return h
}

func validateConfigParams(p ConfigParams) error {
	var errs []error
	required := map[string]string{
		"ClusterName": p.ClusterName, "Namespace": p.Namespace, "HeadlessService": p.HeadlessService,
		"TLSCertFile": p.TLSCertFile, "TLSKeyFile": p.TLSKeyFile, "TLSCAFile": p.TLSCAFile,
		"DataDir": p.DataDir, "SealKeyFile": p.SealKeyFile, "SealKeyID": p.SealKeyID,
	}
	keys := make([]string, 0, len(required))
	for k := range required {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if required[k] == "" {
			errs = append(errs, fmt.Errorf("%s is required", k))
		}
	}
	if len(p.JoinTargets) == 0 && p.Replicas < 1 {
		errs = append(errs, errors.New("Replicas must be at least 1 when JoinTargets is empty"))
	}
	for i, t := range p.JoinTargets {
		if !strings.HasPrefix(t.APIAddr, "https://") {
			errs = append(errs, fmt.Errorf("JoinTargets[%d].APIAddr %q must start with https://", i, t.APIAddr))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("openbao config: %w", err)
	}
	return nil
}

func validateJWT(j JWTInit) error {
	var errs []error
	if j.Issuer == "" {
		errs = append(errs, errors.New("JWT.Issuer is required"))
	}
	if len(j.ValidationPubKeysPEM) == 0 {
		errs = append(errs, errors.New("JWT.ValidationPubKeysPEM needs at least one key"))
	}
	for i, k := range j.ValidationPubKeysPEM {
		if !strings.Contains(k, "-----BEGIN ") {
			errs = append(errs, fmt.Errorf("JWT.ValidationPubKeysPEM[%d] is not PEM", i))
		}
	}
	if j.UpgradeAudience == "" {
		errs = append(errs, errors.New("JWT.UpgradeAudience is required"))
	}
	if j.OperatorAudience == "" {
		errs = append(errs, errors.New("JWT.OperatorAudience is required"))
	}
	if !strings.HasPrefix(j.OperatorSubject, "system:serviceaccount:") {
		errs = append(errs, fmt.Errorf("JWT.OperatorSubject %q must be system:serviceaccount:<namespace>:<name>", j.OperatorSubject))
	}
	if !initNamePattern.MatchString(j.UpgradeRole) {
		errs = append(errs, fmt.Errorf("JWT.UpgradeRole %q is not a valid role name", j.UpgradeRole))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("openbao self-initialization: %w", err)
	}
	return nil
}

// initNamePattern is OpenBao's rule for initialize and request block names.
var initNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

func validateInitRequests(reqs []InitRequest) error {
	var errs []error
	seen := map[string]bool{}
	for i, r := range reqs {
		if !initNamePattern.MatchString(r.Name) {
			errs = append(errs, fmt.Errorf("SelfInit[%d].Name %q must match %s", i, r.Name, initNamePattern))
		}
		if seen[r.Name] {
			errs = append(errs, fmt.Errorf("SelfInit[%d].Name %q is used twice", i, r.Name))
		}
		seen[r.Name] = true
		if r.Path == "" || strings.HasPrefix(r.Path, "/") {
			errs = append(errs, fmt.Errorf("SelfInit[%d].Path %q must be a relative API path such as sys/mounts/secret", i, r.Path))
		}
		switch r.Operation {
		case "", "create", "update", "delete", "read", "list", "patch":
		default:
			errs = append(errs, fmt.Errorf("SelfInit[%d].Operation %q is not an OpenBao operation", i, r.Operation))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("openbao self-initialization: %w", err)
	}
	return nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
