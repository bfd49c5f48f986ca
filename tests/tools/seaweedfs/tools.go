//go:build tools

// Package tools pins SeaweedFS, whose `weed server -s3` is the S3-compatible
// object store of the backup tests. Build it with `make seaweedfs`.
package tools

import (
	_ "github.com/seaweedfs/seaweedfs/weed"
)
