package controllers

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// leaderWatch notices a leadership change within seconds without asking every server
// more often: Kubernetes does not announce one (every server is Ready, active or standby,
// and a step-down or a lost election changes no pod), and a full observation asks each
// server and reads the Raft state. So between full observations it asks only the server
// the status names as the leader, every leaderPollInterval, for sys/health (no token):
// when that server no longer answers as the active node, the cluster is reconciled at once,
// and the full observation finds the new leader. A cluster is watched only while its last
// observation found a leader and it is not paused.
type leaderWatch struct {
	interval  time.Duration
	newClient openbao.NewFunc
	targets   sync.Map // types.NamespacedName -> *leaderTarget
	events    chan event.TypedGenericEvent[*openbaov1alpha1.OpenBaoCluster]
}

// leaderTarget is how to reach a cluster's active server.
type leaderTarget struct {
	pod    string
	config openbao.Config
}

func newLeaderWatch(interval time.Duration) *leaderWatch {
	return &leaderWatch{interval: interval, newClient: openbao.New, events: make(chan event.TypedGenericEvent[*openbaov1alpha1.OpenBaoCluster])}
}

// source feeds the controller a reconcile request for each cluster whose leader changed.
func (w *leaderWatch) source() source.TypedSource[reconcile.Request] {
	return source.Channel(w.events, &handler.TypedEnqueueRequestForObject[*openbaov1alpha1.OpenBaoCluster]{})
}

// watch records the leader a full observation of c found, or forgets c when none.
func (w *leaderWatch) watch(c *openbaov1alpha1.OpenBaoCluster, pods []corev1.Pod, caPEM []byte) {
	if w == nil {
		return
	}
	key := types.NamespacedName{Namespace: c.Namespace, Name: c.Name}
	for i := range pods {
		p := &pods[i]
		if p.Name == c.Status.Leader && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
			w.targets.Store(key, &leaderTarget{pod: p.Name, config: openbao.Config{
				Address:       openbao.PodAddress(p.Status.PodIP, resources.APIPort),
				CACertPEM:     caPEM,
				TLSServerName: resources.PodDNSName(c, p.Name),
				Timeout:       w.interval,
			}})
			return
		}
	}
	w.targets.Delete(key)
}

// forget stops watching a cluster (paused, deleted, or gone).
func (w *leaderWatch) forget(key types.NamespacedName) {
	if w != nil {
		w.targets.Delete(key)
	}
}

// Start polls until ctx ends; the manager runs it on the elected operator only.
func (w *leaderWatch) Start(ctx context.Context) error {
	ticker := time.NewTicker(w.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			w.poll(ctx)
		}
	}
}

// poll asks each watched leader at once and waits for the answers (each bounded by the
// interval), so that a slow server delays no other cluster by more than one round.
func (w *leaderWatch) poll(ctx context.Context) {
	var wg sync.WaitGroup
	w.targets.Range(func(k, v any) bool {
		key, target := k.(types.NamespacedName), v.(*leaderTarget)
		wg.Go(func() {
			if w.stillActive(ctx, target) {
				return
			}
			// Forget it until the next full observation names a leader again, so that a
			// cluster without one is not reconciled on every round.
			w.targets.CompareAndDelete(key, target)
			log.FromContext(ctx).V(1).Info("The recorded leader no longer answers as the active node", "openBaoCluster", key, "pod", target.pod)
			obj := &openbaov1alpha1.OpenBaoCluster{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
			select {
			case w.events <- event.TypedGenericEvent[*openbaov1alpha1.OpenBaoCluster]{Object: obj}:
			case <-ctx.Done():
			}
		})
		return true
	})
	wg.Wait()
}

func (w *leaderWatch) stillActive(ctx context.Context, target *leaderTarget) bool {
	cl, err := w.newClient(target.config)
	if err != nil {
		return false
	}
	h, err := cl.Health(ctx)
	return err == nil && h.Active()
}
