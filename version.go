package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
)

var errPreserveFds = errors.New("--preserve-fds is not supported: file descriptors cannot cross into the container's VM")

var versionCommand = &cli.Command{
	Name:      "version",
	Usage:     "print the version, as --version does",
	ArgsUsage: " ",
	Action: func(c *cli.Context) error {
		fmt.Println(versionString())
		return nil
	},
}
