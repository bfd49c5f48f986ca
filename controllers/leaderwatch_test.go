package controllers

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/types"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/fake"
)

// The leader watch asks only the recorded leader, and announces the cluster once when that
// server no longer answers as the active node.
func TestLeaderWatchAnnouncesALeadershipChange(t *testing.T) {
	bao := fake.NewHealthyCluster("bao", 3, "2.7.2")
	w := newLeaderWatch(time.Second)
	w.newClient = bao.NewClient
	key := types.NamespacedName{Namespace: "ns", Name: "bao"}
	w.targets.Store(key, &leaderTarget{pod: "bao-0", config: openbao.Config{Address: "https://bao-0:8200"}})

	announced := make(chan types.NamespacedName, 4)
	go func() {
		for e := range w.events {
			announced <- types.NamespacedName{Namespace: e.Object.Namespace, Name: e.Object.Name}
		}
	}()
	defer close(w.events)

	w.poll(context.Background())
	assert.Empty(t, announced, "bao-0 still leads")
	assert.Len(t, bao.CallsTo("Health"), 1, "one request, to the leader only")

	bao.SetLeader("bao-1")
	w.poll(context.Background())
	select {
	case got := <-announced:
		assert.Equal(t, key, got)
	case <-time.After(5 * time.Second):
		t.Fatal("the leadership change was not announced")
	}
	_, watched := w.targets.Load(key)
	require.False(t, watched, "forgotten until the next observation names a leader")
	w.poll(context.Background())
	assert.Empty(t, announced, "announced once")
	assert.Len(t, bao.CallsTo("Health"), 2)
}
