package controllers

import (
	"testing"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

func TestAPassWaitsForItsOwnStatusWrite(t *testing.T) {
	at := func(name, rv string) *openbaov1alpha1.OpenBaoCluster {
		return &openbaov1alpha1.OpenBaoCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: rv}}
	}
	var w statusWrites
	assert.False(t, w.behind(at("bao", "5")), "nothing written yet")
	w.wrote(at("bao", "100"))
	assert.True(t, w.behind(at("bao", "99")), "the cache still shows the status before the write")
	assert.False(t, w.behind(at("bao", "100")))
	assert.False(t, w.behind(at("bao", "150")), "a later change (of the spec) is newer")
	assert.False(t, w.behind(at("other", "1")), "per cluster")
	assert.False(t, w.behind(at("bao", "not-a-number")), "an opaque version is never held back")
}
