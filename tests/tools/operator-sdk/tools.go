//go:build tools

// Package tools pins the Operator SDK CLI. The Makefile builds it from this
// module (make operator-sdk) with the containers_image_openpgp tag, so no C
// library is needed, and stamps its version into the binary.
package tools

import _ "github.com/operator-framework/operator-sdk/cmd/operator-sdk"
