//go:build tools

// Package tools pins the etcd server that backs the local control plane and
// the envtest suites. Build it with `make kube-assets`.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
