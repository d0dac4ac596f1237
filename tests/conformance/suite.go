//go:build suite

// The packages the suite's programs and runtimetest import, so that
// `go mod tidy` keeps them in this module's go.mod. Never built.
package main

import (
	_ "github.com/hashicorp/go-multierror"
	_ "github.com/mndrix/tap-go"
	_ "github.com/mrunalp/fileutils"
	_ "github.com/opencontainers/runtime-tools/cgroups"
	_ "github.com/opencontainers/runtime-tools/cmd/runtimetest/mount"
	_ "github.com/opencontainers/runtime-tools/generate"
	_ "github.com/opencontainers/runtime-tools/generate/seccomp"
	_ "github.com/opencontainers/runtime-tools/specerror"
	_ "github.com/opencontainers/runtime-tools/validation/util"
	_ "github.com/opencontainers/selinux/go-selinux/label"
	_ "github.com/satori/go.uuid"
	_ "github.com/sirupsen/logrus"
	_ "github.com/syndtr/gocapability/capability"
	_ "github.com/urfave/cli"
	_ "golang.org/x/sys/unix"
)
