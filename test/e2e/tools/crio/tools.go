//go:build tools

// Package tools records the main packages that hack/k8s-components.sh builds from this
// module, so that `go mod tidy` keeps their dependencies in go.sum.
package tools

import (
	_ "github.com/cri-o/cri-o/cmd/crio"
)
