package nodeagent

import (
	"context"
	"fmt"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

// TestServiceAccountTokenRenewal checks the projected token's request
// (audience, lifetime, bound to the pod) and that it is reused until 80%
// of its lifetime has passed, then renewed.
func TestServiceAccountTokenRenewal(t *testing.T) {
	cs := fake.NewClientset()
	var requests []*authenticationv1.TokenRequest
	cs.PrependReactor("create", "serviceaccounts", func(action k8stesting.Action) (bool, runtime.Object, error) {
		ca, ok := action.(k8stesting.CreateAction)
		if !ok || action.GetSubresource() != "token" {
			return false, nil, nil
		}
		req := ca.GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		requests = append(requests, req)
		req.Status = authenticationv1.TokenRequestStatus{
			Token:               fmt.Sprintf("token-%d", len(requests)),
			ExpirationTimestamp: metav1.NewTime(time.Now().Add(time.Duration(*req.Spec.ExpirationSeconds) * time.Second)),
		}
		return true, req, nil
	})
	w := &podWorker{agent: &agent{cs: cs}, tokens: map[string]projectedToken{}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"}, Spec: corev1.PodSpec{ServiceAccountName: "sa"}}
	src := &corev1.ServiceAccountTokenProjection{Audience: "openbao", ExpirationSeconds: ptr.To[int64](600), Path: "token"}
	ctx := context.Background()

	first, err := w.serviceAccountToken(ctx, pod, "v/0", src)
	if err != nil {
		t.Fatal(err)
	}
	again, err := w.serviceAccountToken(ctx, pod, "v/0", src)
	if err != nil {
		t.Fatal(err)
	}
	if first != "token-1" || again != first || len(requests) != 1 {
		t.Fatalf("tokens %q then %q after %d requests, want one request", first, again, len(requests))
	}
	r := requests[0]
	if len(r.Spec.Audiences) != 1 || r.Spec.Audiences[0] != "openbao" || *r.Spec.ExpirationSeconds != 600 ||
		r.Spec.BoundObjectRef == nil || r.Spec.BoundObjectRef.Kind != "Pod" || r.Spec.BoundObjectRef.UID != "uid-1" {
		t.Errorf("token request = %+v", r.Spec)
	}
	renewIn := time.Until(w.tokens["v/0"].renewAt)
	if renewIn < 400*time.Second || renewIn > 481*time.Second {
		t.Errorf("renewal due in %s, want 80%% of 600s", renewIn)
	}
	// Once the renewal time has passed, a new token is requested.
	w.tokens["v/0"] = projectedToken{token: first, renewAt: time.Now().Add(-time.Second)}
	renewed, err := w.serviceAccountToken(ctx, pod, "v/0", src)
	if err != nil {
		t.Fatal(err)
	}
	if renewed != "token-2" {
		t.Errorf("after the renewal time: %q, want a new token", renewed)
	}
}
