package controllers

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// WatchNamespaceEnv names the environment variable with the namespaces the operator watches:
// OLM's olm.targetNamespaces annotation of the operator's pod, through the downward API. It
// is empty for the AllNamespaces install mode and for a plain `kubectl apply` install.
const WatchNamespaceEnv = "WATCH_NAMESPACE"

// WatchedNamespaces parses a comma-separated list of namespaces (OLM's format); an empty
// list means every namespace.
func WatchedNamespaces(value string) []string {
	var out []string
	for ns := range strings.SplitSeq(value, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}

// ManagedKinds are the kinds of object the operator creates for its clusters and holds in
// its cache, every one labelled app.kubernetes.io/managed-by=openbao-operator
// (resources.Labels): the server and upgrade Job pods inherit the label from their
// templates, the data volumes from the StatefulSet's claim templates. Secrets, which it
// creates too, are not among them: see UncachedKinds.
func ManagedKinds() []client.Object {
	return []client.Object{
		&corev1.ConfigMap{},
		&corev1.Pod{},
		&corev1.Service{},
		&corev1.ServiceAccount{},
		&corev1.PersistentVolumeClaim{},
		&appsv1.StatefulSet{},
		&batchv1.Job{},
		&policyv1.PodDisruptionBudget{},
	}
}

// ManagedSelector selects what the operator created.
func ManagedSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{resources.LabelManagedBy: resources.ManagedBy})
}

// UncachedKinds are never listed, watched or cached: Secrets. RBAC cannot grant list or
// watch by label, so a cache of the operator's own Secrets, however selected, would need
// the right to list every Secret of the watched namespaces. The operator instead reads
// each Secret it needs by name from the API server (get): its seal key, CA and server
// certificate, and the user's spec.tls.existingSecret and spec.seal.existingSecret. It
// does not watch them either: a deleted or changed Secret of a cluster is seen at that
// cluster's next pass (within requeueSteady for an Available cluster).
func UncachedKinds() []client.Object {
	return []client.Object{&corev1.Secret{}}
}

// ClientOptions make the manager's client read UncachedKinds from the API server instead
// of starting an informer for them on first use.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: UncachedKinds()}}
}

// CacheOptions restricts the manager's cache, and so every watch and every read of the
// reconciler, to the given namespaces (with none, to the whole cluster), and, of the kinds
// the operator creates (ManagedKinds), to the objects that carry its label. The memory the
// operator needs so grows with the clusters it manages and not with the ConfigMaps and
// Pods of everyone else, which it never receives. An OpenBaoCluster outside the
// namespaces is never seen, so never touched. Secrets are not cached at all
// (UncachedKinds).
func CacheOptions(namespaces []string) cache.Options {
	opts := cache.Options{ByObject: map[client.Object]cache.ByObject{}}
	for _, obj := range ManagedKinds() {
		opts.ByObject[obj] = cache.ByObject{Label: ManagedSelector()}
	}
	if len(namespaces) == 0 {
		return opts
	}
	opts.DefaultNamespaces = map[string]cache.Config{}
	for _, ns := range namespaces {
		opts.DefaultNamespaces[ns] = cache.Config{}
	}
	return opts
}
