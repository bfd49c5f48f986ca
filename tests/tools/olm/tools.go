//go:build tools

// Package tools pins Operator Lifecycle Manager (olm-operator, catalog-operator,
// packageserver, copy-content) and operator-registry's opm, which the local
// cluster runs to install the operator the way OperatorHub does. The Makefile
// builds them from this module (make olm-bins).
package tools

import (
	_ "github.com/operator-framework/operator-lifecycle-manager/cmd/catalog"
	_ "github.com/operator-framework/operator-lifecycle-manager/cmd/copy-content"
	_ "github.com/operator-framework/operator-lifecycle-manager/cmd/olm"
	_ "github.com/operator-framework/operator-lifecycle-manager/cmd/package-server"
	_ "github.com/operator-framework/operator-lifecycle-manager/util/cpb"
	_ "github.com/operator-framework/operator-registry/cmd/opm"
)
