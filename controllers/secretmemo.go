package controllers

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// secretMemoTTL is how long a Secret read by name is remembered. A cluster in motion has a
// pass every second or two (an upgrade waiting for a server); without the memo each pass
// reads the cluster's Secrets (seal key, CA, TLS) from the API server again.
const secretMemoTTL = 10 * time.Second

// secretMemo remembers the Secrets the provisioning reconciler read by name, for
// secretMemoTTL. Secrets are never held by an informer (UncachedKinds: the operator may not
// list or watch them), so a Secret changed or deleted behind the operator's back is seen
// within secretMemoTTL of the pass that would otherwise have seen it. Every write of a
// Secret by the reconciler forgets it, so the operator never acts on its own stale copy.
type secretMemo struct {
	mu      sync.Mutex
	entries map[client.ObjectKey]memoizedSecret
}

type memoizedSecret struct {
	secret *corev1.Secret
	readAt time.Time
}

// get fills secret from the memo if it was read less than ttl ago, or from reader
// (remembering what it read).
func (m *secretMemo) get(ctx context.Context, reader client.Reader, now clock.PassiveClock, ttl time.Duration, key client.ObjectKey, secret *corev1.Secret) error {
	m.mu.Lock()
	e, ok := m.entries[key]
	m.mu.Unlock()
	if ok && now.Since(e.readAt) < ttl {
		e.secret.DeepCopyInto(secret)
		return nil
	}
	if err := reader.Get(ctx, key, secret); err != nil {
		m.forget(key)
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries == nil {
		m.entries = map[client.ObjectKey]memoizedSecret{}
	}
	m.entries[key] = memoizedSecret{secret: secret.DeepCopy(), readAt: now.Now()}
	return nil
}

// forget drops a Secret from the memo (after a write, or a failed read).
func (m *secretMemo) forget(key client.ObjectKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries, key)
}

// secretReader reads Secrets through the reconciler's memo.
type secretReader struct{ r *OpenBaoClusterReconciler }

func (s secretReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	secret, ok := obj.(*corev1.Secret)
	if !ok || len(opts) > 0 {
		return s.r.apiReader().Get(ctx, key, obj, opts...)
	}
	ttl := s.r.Options.SecretMemoTTL
	if ttl == 0 {
		ttl = secretMemoTTL
	}
	return s.r.secrets.get(ctx, s.r.apiReader(), s.r.Clock, ttl, key, secret)
}

func (s secretReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return s.r.apiReader().List(ctx, list, opts...)
}
