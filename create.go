package main

import (
	"github.com/urfave/cli/v2"

	"github.com/kabuto-runtime/kabuto/container"
)

var createFlags = []cli.Flag{
	&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Value: "", Usage: "path to the root of the bundle directory, defaults to the current directory"},
	&cli.StringFlag{Name: "console-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"},
	&cli.StringFlag{Name: "pidfd-socket", Usage: "accepted for compatibility with runc; not supported"},
	&cli.StringFlag{Name: "pid-file", Usage: "specify the file to write the process id to"},
	&cli.BoolFlag{Name: "no-pivot", Usage: "do not use pivot root to jail process inside rootfs"},
	&cli.BoolFlag{Name: "no-new-keyring", Usage: "do not create a new session keyring for the container"},
	&cli.IntFlag{Name: "preserve-fds", Usage: "pass N additional file descriptors to the container (not supported across the VM boundary: must be 0)"},
}

var createCommand = &cli.Command{
	Name:      "create",
	Usage:     "create a container",
	ArgsUsage: "<container-id>",
	Description: `The create command creates an instance of a container for a bundle: it
boots the container's VM and prepares the container's process in it, which
then waits for "kabuto start". The bundle is a directory with a specification
file named "` + specConfig + `" and a root filesystem.

Where "<container-id>" is your name for the instance of the container that
you are starting. The name you provide for the container instance must be
unique on your host.`,
	Flags: createFlags,
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1); err != nil {
			return err
		}
		opts, err := createOptions(c)
		if err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		_, err = r.Create(c.Context, opts)
		return err
	},
}

func createOptions(c *cli.Context) (container.CreateOptions, error) {
	id, err := containerID(c)
	if err != nil {
		return container.CreateOptions{}, err
	}
	bundle := c.String("bundle")
	if bundle == "" {
		bundle = "."
	}
	if n := c.Int("preserve-fds"); n != 0 {
		return container.CreateOptions{}, errPreserveFds
	}
	return container.CreateOptions{
		ID:            id,
		Bundle:        bundle,
		PidFile:       c.String("pid-file"),
		ConsoleSocket: c.String("console-socket"),
		NoPivot:       c.Bool("no-pivot"),
		NoNewKeyring:  c.Bool("no-new-keyring"),
	}, nil
}
