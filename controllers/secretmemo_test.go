package controllers

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// countingReader answers Secret reads from a map and counts them.
type countingReader struct {
	client.Reader
	secrets map[string]*corev1.Secret
	reads   int
}

func (c *countingReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	c.reads++
	s, ok := c.secrets[key.Name]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, key.Name)
	}
	s.DeepCopyInto(obj.(*corev1.Secret))
	return nil
}

// A Secret read by name is read from the API server at most once per secretMemoTTL, except
// after the reconciler wrote it; a failed read is not remembered.
func TestSecretMemo(t *testing.T) {
	ctx := context.Background()
	api := &countingReader{secrets: map[string]*corev1.Secret{
		"bao-ca": {ObjectMeta: metav1.ObjectMeta{Name: "bao-ca", Namespace: "ns"}, Data: map[string][]byte{"tls.crt": []byte("one")}},
	}}
	clock := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := &OpenBaoClusterReconciler{APIReader: api, Clock: clock}
	read := func(name string) (*corev1.Secret, error) {
		s := &corev1.Secret{}
		return s, (secretReader{r}).Get(ctx, client.ObjectKey{Namespace: "ns", Name: name}, s)
	}

	s, err := read("bao-ca")
	require.NoError(t, err)
	assert.Equal(t, "one", string(s.Data["tls.crt"]))
	s.Data["tls.crt"] = []byte("changed by the caller")
	api.secrets["bao-ca"].Data["tls.crt"] = []byte("two") // changed behind the operator's back
	clock.SetTime(clock.Now().Add(secretMemoTTL - time.Second))
	s, err = read("bao-ca")
	require.NoError(t, err)
	assert.Equal(t, "one", string(s.Data["tls.crt"]), "remembered, and not changed by what a caller did with its copy")
	assert.Equal(t, 1, api.reads)

	clock.SetTime(clock.Now().Add(time.Second))
	s, err = read("bao-ca")
	require.NoError(t, err)
	assert.Equal(t, "two", string(s.Data["tls.crt"]), "read again after secretMemoTTL")
	assert.Equal(t, 2, api.reads)

	r.wrote(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bao-ca", Namespace: "ns"}})
	_, err = read("bao-ca")
	require.NoError(t, err)
	assert.Equal(t, 3, api.reads, "read again after the reconciler wrote it")

	_, err = read("bao-tls")
	assert.True(t, apierrors.IsNotFound(err))
	_, err = read("bao-tls")
	assert.True(t, apierrors.IsNotFound(err))
	assert.Equal(t, 5, api.reads, "a missing Secret is looked for again at once")

	r.Options.SecretMemoTTL = -1
	_, err = read("bao-ca")
	require.NoError(t, err)
	_, err = read("bao-ca")
	require.NoError(t, err)
	assert.Equal(t, 7, api.reads, "a negative SecretMemoTTL remembers nothing")
}
