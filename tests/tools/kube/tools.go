//go:build tools

// Package tools pins the Kubernetes control-plane commands that the local
// cluster and the envtest suites run. Build them with `make kube-assets`.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
