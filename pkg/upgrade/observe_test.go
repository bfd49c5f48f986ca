package upgrade

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/pki"
)

// silentServer accepts connections and never answers, like a server whose process hangs or
// a node that stopped: a client waits for its timeout.
func silentServer(t *testing.T) (addr string, accepted func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "https://" + l.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return len(conns) }
}

// TestObserveAsksServersInParallel: three servers that do not answer cost one request
// timeout, not three.
func TestObserveAsksServersInParallel(t *testing.T) {
	addr, accepted := silentServer(t)
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
