package controllers

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// Following a rotation of the Kubernetes service-account signing key.
//
// OpenBao's JWT auth verifies the tokens of the operator and of its upgrade Jobs with the
// public keys it was given (jwt_validation_pubkeys), not by asking the API server. The API
// server publishes every key it still accepts at /openid/v1/jwks (all keys of
// --service-account-key-file): during a rotation the old and the new key, afterwards the new
// one only. So the set OpenBao must trust is exactly the published set: giving it that set
// keeps old and new trusted while the API server accepts both, and drops a key once the API
// server no longer accepts it. The operator re-reads the published keys every
// issuerCacheTTL and writes them when they differ from what it last gave OpenBao
// (status.serviceAccountKeys).
//
// The operator writes the keys itself, logged in with its own role, because it is the one
// that notices the change and the write cannot wait for an upgrade Job; its role carries the
// policy resources.JWTKeysPolicy for exactly this write (keys may change, the issuer may not).

// keysOutcome is what this pass did about the service-account keys; nil when it did not look.
type keysOutcome struct {
	// synced: OpenBao was given, in this pass or before, the keys the API server publishes.
	synced bool
	reason string
	msg    string
}

// reconcileServiceAccountKeys gives OpenBao's JWT auth the service-account keys the API
// server publishes when they differ from those it was last given. It never stops the pass:
// a failure is reported in the ServiceAccountKeysSynced condition and retried on the next.
func (r *OpenBaoClusterReconciler) reconcileServiceAccountKeys(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	if !c.Status.Initialized || s.configParams == nil {
		// Self-initialization gives a new cluster the keys of its first start.
		return ctrl.Result{}, nil
	}
	want := openbao.JWTAuthConfig{BoundIssuer: s.configParams.JWT.Issuer, JWTValidationPubKeys: s.configParams.JWT.ValidationPubKeysPEM}
	fingerprints, err := keyFingerprints(want.JWTValidationPubKeys)
	if err != nil {
		s.keys = &keysOutcome{reason: openbaov1alpha1.ReasonKeysUpdateFailed, msg: fmt.Sprintf("The API server's service-account keys cannot be read: %v", err)}
		return ctrl.Result{}, nil
	}
	cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionServiceAccountKeysSynced)
	if slices.Equal(fingerprints, c.Status.ServiceAccountKeys) && cond != nil && cond.Status == metav1.ConditionTrue {
		return ctrl.Result{}, nil
	}
	pod := podForWrite(s)
	if pod == nil {
		s.keys = &keysOutcome{reason: openbaov1alpha1.ReasonKeysUpdateFailed,
			msg: "No server is ready to be given the API server's service-account keys; the operator retries once one is."}
		return ctrl.Result{}, nil
	}
	logger := log.FromContext(ctx)
	logger.Info("Giving OpenBao the API server's service-account keys", "pod", pod.Name,
		"keys", fingerprints, "before", c.Status.ServiceAccountKeys)
	err = r.writeServiceAccountKeys(ctx, s, pod, want)
	switch {
	case errors.Is(err, openbao.ErrPermissionDenied):
		s.keys = &keysOutcome{reason: openbaov1alpha1.ReasonKeysPolicyMissing, msg: policyMissingMessage(c, want.BoundIssuer, err)}
		logger.Info("OpenBao refused the update of its JWT auth keys", "error", err.Error())
		return ctrl.Result{}, nil
	case err != nil:
		s.keys = &keysOutcome{reason: openbaov1alpha1.ReasonKeysUpdateFailed,
			msg: fmt.Sprintf("OpenBao could not be given the API server's service-account keys (%s); the operator retries: %v", strings.Join(short(fingerprints), ", "), err)}
		return ctrl.Result{}, nil
	}
	added, removed := diffKeys(c.Status.ServiceAccountKeys, fingerprints)
	c.Status.ServiceAccountKeys = fingerprints
	s.keys = &keysOutcome{synced: true}
	if len(added) > 0 || len(removed) > 0 {
		s.events = append(s.events, pendingEvent{eventType: corev1.EventTypeNormal, reason: "ServiceAccountKeysUpdated", action: "UpdateJWTKeys",
			message: fmt.Sprintf("OpenBao's JWT auth now trusts the %d service-account key(s) the API server publishes (%s); added %s, removed %s.",
				len(fingerprints), strings.Join(short(fingerprints), ", "), listOrNone(short(added)), listOrNone(short(removed)))})
	}
	return ctrl.Result{}, nil
}

// writeServiceAccountKeys logs in to pod with the operator's role and replaces the JWT auth
// configuration; a standby forwards the write to the active server.
func (r *OpenBaoClusterReconciler) writeServiceAccountKeys(ctx context.Context, s *scope, pod *corev1.Pod, want openbao.JWTAuthConfig) error {
	if r.Observer == nil {
		return errors.New("no OpenBao client is configured")
	}
	cl, err := r.Observer.Client(ctx, s.cluster, pod, s.tlsCAPEM)
	if err != nil {
		return fmt.Errorf("log in to %s: %w", pod.Name, err)
	}
	return cl.SetJWTAuthConfig(ctx, resources.JWTAuthMount, want)
}

// podForWrite is the active server's pod when it is ready, else any ready server's pod.
func podForWrite(s *scope) *corev1.Pod {
	var ready *corev1.Pod
	for i := range s.pods {
		p := &s.pods[i]
		if !upgrade.PodReady(p) || p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			continue
		}
		if p.Name == s.cluster.Status.Leader {
			return p
		}
		if ready == nil {
			ready = p
		}
	}
	return ready
}

// policyMissingMessage explains a refused write: on a cluster the operator has given keys
// before, the issuer has most likely changed (the policy pins it); otherwise the cluster was
// created before the operator's role could update the keys.
func policyMissingMessage(c *openbaov1alpha1.OpenBaoCluster, issuer string, err error) string {
	if len(c.Status.ServiceAccountKeys) > 0 {
		return fmt.Sprintf("OpenBao refused the operator the update of its JWT auth keys (%v). The operator's policy %s allows only the issuer the cluster was created with; if the API server's issuer is no longer that one (it is now %s), update auth/%s/config and the policy by hand (see the README, \"Service-account signing keys\").",
			err, resources.OperatorJWTKeysPolicy, issuer, resources.JWTAuthMount)
	}
	return fmt.Sprintf("OpenBao refused the operator the update of its JWT auth keys (%v): the cluster was most likely created by an operator release whose role could not update them. Until the policy %s is added to the role %s by hand (see the README, \"Service-account signing keys\"), a rotation of the service-account signing key must also be applied to auth/%s/config by hand, or the operator and its upgrade Jobs can no longer log in.",
		err, resources.OperatorJWTKeysPolicy, resources.OperatorRole, resources.JWTAuthMount)
}

// setServiceAccountKeysCondition reports what reconcileServiceAccountKeys did; a pass that did
// not look keeps the condition as it was.
func setServiceAccountKeysCondition(c *openbaov1alpha1.OpenBaoCluster, k *keysOutcome) {
	if k == nil {
		return
	}
	cond := metav1.Condition{Type: openbaov1alpha1.ConditionServiceAccountKeysSynced, Status: metav1.ConditionFalse,
		Reason: k.reason, Message: k.msg, ObservedGeneration: c.Generation}
	if k.synced {
		cond.Status, cond.Reason = metav1.ConditionTrue, openbaov1alpha1.ReasonKeysSynced
		cond.Message = fmt.Sprintf("OpenBao's JWT auth trusts the %d service-account key(s) the API server publishes (%s).",
			len(c.Status.ServiceAccountKeys), strings.Join(short(c.Status.ServiceAccountKeys), ", "))
	}
	meta.SetStatusCondition(&c.Status.Conditions, cond)
}

// keyFingerprints are the sorted "sha256:<hex>" fingerprints of PEM public keys.
func keyFingerprints(pems []string) ([]string, error) {
	if len(pems) == 0 {
		return nil, errors.New("no key")
	}
	out := make([]string, 0, len(pems))
	for i, p := range pems {
		block, _ := pem.Decode([]byte(p))
		if block == nil {
			return nil, fmt.Errorf("key %d is not PEM", i)
		}
		if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		sum := sha256.Sum256(block.Bytes)
		out = append(out, "sha256:"+hex.EncodeToString(sum[:]))
	}
	sort.Strings(out)
	return slices.Compact(out), nil
}

// diffKeys lists the fingerprints of after that are not in before, and the reverse.
func diffKeys(before, after []string) (added, removed []string) {
	for _, k := range after {
		if !slices.Contains(before, k) {
			added = append(added, k)
		}
	}
	for _, k := range before {
		if !slices.Contains(after, k) {
			removed = append(removed, k)
		}
	}
	return added, removed
}

// short abbreviates fingerprints for messages ("sha256:0123456789ab").
func short(fps []string) []string {
	out := make([]string, len(fps))
	for i, f := range fps {
		if len(f) > len("sha256:")+12 {
			f = f[:len("sha256:")+12]
		}
		out[i] = f
	}
	return out
}

func listOrNone(items []string) string {
	if len(items) == 0 {
		return "none"
	}
	return strings.Join(items, ", ")
}
