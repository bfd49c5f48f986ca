package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// SessionCounter counts the operator's OpenBao logins and token renewals (upgrade.Observer).
type SessionCounter interface {
	Logins() int64
	Renewals() int64
}

// RegisterSessionMetrics exposes the operator's OpenBao logins and token renewals on the
// manager's metrics endpoint: each login creates a token on the user's cluster (a Raft
// write), so their rate tells whether the operator keeps its sessions.
func RegisterSessionMetrics(c SessionCounter) error {
	for _, m := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "openbao_operator_openbao_logins_total",
			Help: "JWT logins of the operator to the OpenBao clusters it manages (each creates a token).",
		}, func() float64 { return float64(c.Logins()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "openbao_operator_openbao_token_renewals_total",
			Help: "Renewals of the operator's OpenBao tokens it asked for.",
		}, func() float64 { return float64(c.Renewals()) }),
	} {
		if err := ctrlmetrics.Registry.Register(m); err != nil {
			return err
		}
	}
	return nil
}
