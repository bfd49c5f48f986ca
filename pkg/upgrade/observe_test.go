package upgrade

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/pki"
)

// TestObserveAsksServersInParallel: three servers that do not answer cost one request
// timeout, not three.
func TestObserveAsksServersInParallel(t *testing.T) {
	addr, accepted := baotest.SilentServer(t)
	ca, err := pki.NewCA("test", time.Now(), time.Hour)
	require.NoError(t, err)
	const timeout = 2 * time.Second
	obs := &Observer{
		RequestTimeout: timeout,
		NewClient: func(cfg openbao.Config) (openbao.Client, error) {
			cfg.Address = addr
			return openbao.New(cfg)
		},
	}
	c := &openbaov1alpha1.OpenBaoCluster{ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: "ns", UID: "uid"}}
	var pods []corev1.Pod
	for _, name := range []string{"bao-0", "bao-1", "bao-2"} {
		pods = append(pods, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.PodStatus{PodIP: "10.0.0.1"}})
	}
	pods = append(pods, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bao-3"}})

	start := time.Now()
	o := obs.Observe(t.Context(), c, pods, ca.CertPEM)
	took := time.Since(start)

	assert.Equal(t, 3, accepted(), "every server with an IP was asked")
	assert.GreaterOrEqual(t, took, timeout, "the servers were waited for")
	assert.Less(t, took, 2*timeout, "three silent servers cost one timeout (asked one after another: %s)", 3*timeout)
	assert.Empty(t, o.Leader)
	assert.Nil(t, o.Raft)
	for _, p := range pods[:3] {
		assert.Equal(t, "The OpenBao API does not answer yet.", o.Errors[p.Name], p.Name)
		assert.False(t, o.Servers[p.Name].Reachable, p.Name)
	}
	assert.Equal(t, "The pod has no IP address or is terminating.", o.Errors["bao-3"])
}
