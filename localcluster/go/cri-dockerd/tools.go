//go:build tools

// Package tools pins the cri-dockerd command this module builds.
package tools

import _ "github.com/Mirantis/cri-dockerd"
