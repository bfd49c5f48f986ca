package openbao_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openbao/openbao/api/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// TestObserverKeepsOneSessionPerCluster: against three real servers whose operator role
// gives 10-minute tokens that cannot be renewed past 10 minutes (the role of a cluster
// created before the operator renewed its tokens), the operator's observer logs in once and
// reuses the token on every pass and on every server (a standby forwards), logs in again
// when two thirds of the token's 10 minutes have passed (the renewal cannot extend it), and
// when a server rejects the token (here: revoked).
func TestObserverKeepsOneSessionPerCluster(t *testing.T) {
	t.Parallel()
	c := baotest.NewCluster(t, baotest.Options{Nodes: 3, OperatorTokenTTL: "10m", OperatorTokenMaxTTL: "10m"})
	c.Start()
	for _, n := range c.Nodes {
		n.WaitServing(2 * time.Minute)
	}
	active := c.WaitActive(time.Minute)

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(c.SignJWT(baotest.OperatorSubject, baotest.OperatorAudience)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The observer reaches a pod by its IP on port 8200; the test servers listen on loopback
	// ports of their own, found here by the TLS server name (the pod's DNS name).
	byDNSName := map[string]*baotest.Node{}
	for _, n := range c.Nodes {
		byDNSName[n.DNSName] = n
	}
	newClient := func(cfg openbao.Config) (openbao.Client, error) {
		n, ok := byDNSName[cfg.TLSServerName]
		if !ok {
			return nil, fmt.Errorf("no test server named %s", cfg.TLSServerName)
		}
		cfg.Address = n.Address()
		return openbao.New(cfg)
	}
	clk := clocktesting.NewFakePassiveClock(time.Now())
	obs := &upgrade.Observer{NewClient: newClient, TokenFile: tokenFile, Clock: clk}
	cluster := &openbaov1alpha1.OpenBaoCluster{ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: "ns", UID: "cluster-uid"}}
	var pods []corev1.Pod
	for _, n := range c.Nodes {
		pods = append(pods, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: n.PodName}, Status: corev1.PodStatus{PodIP: "127.0.0.1"}})
	}
	ctx := t.Context()

	observe := func(pass string) {
		t.Helper()
		o := obs.Observe(ctx, cluster, pods, c.CACertPEM())
		if o.Leader != active.PodName || o.Raft == nil || len(o.Raft.Voters) == 0 {
			t.Fatalf("%s: leader %q, Raft membership %+v (errors %v): the token did not read the Raft state", pass, o.Leader, o.Raft, o.Errors)
		}
	}
	observe("first pass")
	if got := obs.Logins(); got != 1 {
		t.Fatalf("logins after the first pass: %d, want 1", got)
	}
	var standby *corev1.Pod
	for i := range pods {
		if pods[i].Name != active.PodName {
			standby = &pods[i]
		}
	}
	first := sessionOf(t, obs, cluster, standby, c.CACertPEM())
	if until := time.Until(first.Expires); until < 9*time.Minute || until > 10*time.Minute {
		t.Fatalf("the operator role's token expires in %s, want the role's 10 minutes", until)
	}
	for i := range 5 {
		clk.SetTime(clk.Now().Add(time.Minute))
		observe(fmt.Sprintf("pass %d", i+2))
	}
	// Through a standby, which forwards the request to the active node.
	cl, err := obs.Client(ctx, cluster, standby, c.CACertPEM())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.AutopilotState(ctx); err != nil {
		t.Fatalf("autopilot state through the standby %s with the session's token: %v", standby.Name, err)
	}
	if got := obs.Logins(); got != 1 {
		t.Fatalf("logins after six passes in five minutes and a call through a standby: %d, want 1", got)
	}
	if s := sessionOf(t, obs, cluster, standby, c.CACertPEM()); s.Token != first.Token {
		t.Fatal("the session's token changed without a new login")
	}

	// Two thirds of the 10 minutes have passed: the renewal cannot extend the token past
	// the role's maximum, so the next pass logs in again.
	clk.SetTime(clk.Now().Add(2 * time.Minute))
	observe("pass after 7 minutes")
	if got := obs.Logins(); got != 2 {
		t.Fatalf("logins after 7 minutes: %d, want 2", got)
	}
	if got := obs.Renewals(); got != 1 {
		t.Fatalf("renewals after 7 minutes: %d, want the 1 that showed the role's tokens cannot be extended", got)
	}
	second := sessionOf(t, obs, cluster, standby, c.CACertPEM())
	if second.Token == first.Token {
		t.Fatal("the new login kept the old token")
	}

	// A token the server no longer accepts: the pass logs in again and reads the Raft state.
	revoke(t, active, c.CACertPEM(), second.Token)
	observe("pass after the token was revoked")
	if got := obs.Logins(); got != 3 {
		t.Fatalf("logins after the token was revoked: %d, want 3", got)
	}
	if third := sessionOf(t, obs, cluster, standby, c.CACertPEM()); third.Token == second.Token {
		t.Fatal("the revoked token is still the session's")
	}

	// Another cluster has a session of its own.
	other := cluster.DeepCopy()
	other.UID = "other-uid"
	o := obs.Observe(ctx, other, pods, c.CACertPEM())
	if o.Raft == nil {
		t.Fatalf("the other cluster's pass read no Raft state: %v", o.Errors)
	}
	if got := obs.Logins(); got != 4 {
		t.Fatalf("logins after a pass of a second cluster: %d, want 4", got)
	}
}

// TestObserverRenewsTheOperatorToken: against a real server whose operator role gives
// 3-second tokens renewable up to 15 seconds (the default role's 1 hour and 24 hours, scaled
// down), passes every 250 ms over more than three lifetimes of a token log in once and renew
// the token; every pass reads the Raft state with it (an expired token would be rejected and
// counted as a login). The first login after the maximum lifetime is the second login.
func TestObserverRenewsTheOperatorToken(t *testing.T) {
	t.Parallel()
	const ttl, maxTTL = 3 * time.Second, 15 * time.Second
	c := baotest.NewCluster(t, baotest.Options{Nodes: 1, OperatorTokenTTL: "3s", OperatorTokenMaxTTL: "15s"})
	c.Start()
	n := c.Nodes[0]
	n.WaitServing(2 * time.Minute)
	c.WaitActive(time.Minute)

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(c.SignJWT(baotest.OperatorSubject, baotest.OperatorAudience)), 0o600); err != nil {
		t.Fatal(err)
	}
	newClient := func(cfg openbao.Config) (openbao.Client, error) {
		cfg.Address = n.Address()
		return openbao.New(cfg)
	}
	obs := &upgrade.Observer{NewClient: newClient, TokenFile: tokenFile}
	cluster := &openbaov1alpha1.OpenBaoCluster{ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: "ns", UID: "cluster-uid"}}
	pods := []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: n.PodName}, Status: corev1.PodStatus{PodIP: "127.0.0.1"}}}
	ctx := t.Context()

	passUntil := func(end time.Time) (passes int) {
		t.Helper()
		for time.Now().Before(end) {
			o := obs.Observe(ctx, cluster, pods, c.CACertPEM())
			if o.Raft == nil || len(o.Raft.Voters) == 0 {
				t.Fatalf("pass %d: no Raft membership read with the session's token (errors %v)", passes, o.Errors)
			}
			passes++
			time.Sleep(250 * time.Millisecond)
		}
		return passes
	}
	start := time.Now()
	first := sessionOf(t, obs, cluster, &pods[0], c.CACertPEM())
	if !first.Renewable || first.TTL != ttl {
		t.Fatalf("the operator role's token: renewable %t, lifetime %s; want a renewable %s token", first.Renewable, first.TTL, ttl)
	}
	passes := passUntil(start.Add(maxTTL - 3*time.Second))
	if got := obs.Logins(); got != 1 {
		t.Fatalf("logins over %d passes in %s (%s tokens renewable up to %s): %d, want 1", passes, time.Since(start).Round(time.Millisecond), ttl, maxTTL, got)
	}
	if got := obs.Renewals(); got < 3 {
		t.Fatalf("renewals over %s of %s tokens: %d, want at least 3", time.Since(start).Round(time.Millisecond), ttl, got)
	}
	if s := sessionOf(t, obs, cluster, &pods[0], c.CACertPEM()); s.Token != first.Token {
		t.Fatal("the session's token changed without a new login")
	}

	// Past the maximum lifetime the renewal no longer extends the token: one new login.
	passUntil(start.Add(maxTTL + 4*time.Second))
	if got := obs.Logins(); got != 2 {
		t.Fatalf("logins %s after the first, with a maximum lifetime of %s: %d, want 2", time.Since(start).Round(time.Millisecond), maxTTL, got)
	}
	if s := sessionOf(t, obs, cluster, &pods[0], c.CACertPEM()); s.Token == first.Token {
		t.Fatal("the token past its maximum lifetime is still the session's")
	}
}

// sessionOf is the cluster's current session, as a client of the observer gets it.
func sessionOf(t *testing.T, obs *upgrade.Observer, c *openbaov1alpha1.OpenBaoCluster, pod *corev1.Pod, caPEM []byte) openbao.Session {
	t.Helper()
	cl, err := obs.Client(t.Context(), c, pod, caPEM)
	if err != nil {
		t.Fatal(err)
	}
	s := cl.Session()
	if s.Token == "" {
		t.Fatal("the observer's client has no token")
	}
	return s
}

// revoke revokes a token with the token itself (the default policy allows revoke-self).
func revoke(t *testing.T, n *baotest.Node, caPEM []byte, token string) {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = n.Address()
	if err := cfg.ConfigureTLS(&api.TLSConfig{CACertBytes: caPEM, TLSServerName: n.DNSName}); err != nil {
		t.Fatal(err)
	}
	cl, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl.SetToken(token)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := cl.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
		t.Fatalf("revoke the session's token: %v", err)
	}
}
