package controllers

import "time"

// Requeue intervals. Changes to objects the controller owns or watches trigger a reconcile
// on their own; these only pace the polling of OpenBao's own state, which Kubernetes does
// not announce.
const (
	// requeueSteady re-reads a healthy cluster's OpenBao state.
	requeueSteady = 30 * time.Second
	// leaderPollInterval is how often the server the status names as the leader is asked
	// whether it still is, between full observations (see leaderWatch).
	leaderPollInterval = 2 * time.Second
	// requeueConverging re-reads a cluster that is forming or recovering.
	requeueConverging = 5 * time.Second
	// requeueAfterError backs off after an error the next attempt may not repeat.
	requeueAfterError = 10 * time.Second
	// requeueStaleCache looks again at a cluster whose cached copy is older than the status
	// this controller last wrote; the cache catches up within milliseconds.
	requeueStaleCache = 200 * time.Millisecond

	// caValidity and serverCertValidity of the operator-managed certificates; server
	// certificates are reissued renewBefore their expiry.
	caValidity         = 10 * 365 * 24 * time.Hour
	serverCertValidity = 365 * 24 * time.Hour
	renewBefore        = 30 * 24 * time.Hour

	// issuerCacheTTL is how long the service-account issuer's keys are reused. It bounds how
	// long a rotation of the API server's signing key goes unnoticed (plus up to
	// requeueSteady): well within the time a rotated-out key is still accepted, which spans
	// the life of the tokens it signed (an hour for the operator's own).
	issuerCacheTTL = time.Minute
)
