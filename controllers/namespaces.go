package controllers

import (
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/cache"
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

// CacheOptions restricts the manager's cache, and so every watch and every read of the
// reconciler, to the given namespaces; with none it covers the whole cluster. An
// OpenBaoCluster outside them is never seen, so never touched.
func CacheOptions(namespaces []string) cache.Options {
	if len(namespaces) == 0 {
		return cache.Options{}
	}
	opts := cache.Options{DefaultNamespaces: map[string]cache.Config{}}
	for _, ns := range namespaces {
		opts.DefaultNamespaces[ns] = cache.Config{}
	}
	return opts
}
