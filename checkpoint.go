package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
)

// errCheckpoint explains why checkpoint and restore fail.
var errCheckpoint = errors.New("checkpoint/restore is not supported by kabuto (the container's processes run in a QEMU guest with its own kernel: CRIU on the host cannot see them, and kabuto does not snapshot VMs)")

// criuFlags are the flags runc's checkpoint and restore share.
func criuFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "image-path", Usage: "path for saving criu image files"},
		&cli.StringFlag{Name: "work-path", Usage: "path for saving work files and logs"},
		&cli.BoolFlag{Name: "tcp-established", Usage: "allow open tcp connections"},
		&cli.BoolFlag{Name: "ext-unix-sk", Usage: "allow external unix sockets"},
		&cli.BoolFlag{Name: "shell-job", Usage: "allow shell jobs"},
		&cli.BoolFlag{Name: "lazy-pages", Usage: "use userfaultfd to lazily restore memory pages"},
		&cli.BoolFlag{Name: "file-locks", Usage: "handle file locks, for safety"},
		&cli.StringFlag{Name: "manage-cgroups-mode", Usage: "cgroups mode: 'soft' (default), 'full' and 'strict'"},
		&cli.StringSliceFlag{Name: "empty-ns", Usage: "create a namespace, but don't restore its properties"},
		&cli.BoolFlag{Name: "auto-dedup", Usage: "enable auto deduplication of memory images"},
	}
}

// unsupportedCriu checks the arguments as runc would, then refuses. It
// touches nothing: no image or work directory is created.
func unsupportedCriu(c *cli.Context) error {
	if err := checkArgs(c, 1); err != nil {
		return err
	}
	if _, err := containerID(c); err != nil {
		return err
	}
	return fmt.Errorf("%s: %w", c.Command.Name, errCheckpoint)
}

var checkpointCommand = &cli.Command{
	Name:      "checkpoint",
	Usage:     "checkpoint a running container (not supported by kabuto)",
	ArgsUsage: "<container-id>",
	Description: `runc checkpoints a container with CRIU. kabuto accepts runc's flags but
refuses: the container runs in its own VM, out of CRIU's sight on the host.`,
	Flags: append(criuFlags(),
		&cli.StringFlag{Name: "parent-path", Usage: "path for previous criu image files in pre-dump"},
		&cli.BoolFlag{Name: "leave-running", Usage: "leave the process running after checkpointing"},
		&cli.IntFlag{Name: "status-fd", Value: -1, Usage: "criu writes \\0 to this FD once lazy-pages is ready"},
		&cli.StringFlag{Name: "page-server", Usage: "ADDRESS:PORT of the page server"},
		&cli.BoolFlag{Name: "pre-dump", Usage: "dump container's memory information only, leave the container running after this"},
	),
	Action: unsupportedCriu,
}

var restoreCommand = &cli.Command{
	Name:      "restore",
	Usage:     "restore a container from a previous checkpoint (not supported by kabuto)",
	ArgsUsage: "<container-id>",
	Description: `runc restores a container from CRIU images. kabuto accepts runc's flags but
refuses: it cannot checkpoint, so there is nothing to restore.`,
	Flags: append(criuFlags(),
		&cli.StringFlag{Name: "console-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"},
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "path to the root of the bundle directory"},
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the container's process"},
		&cli.StringFlag{Name: "pid-file", Usage: "specify the file to write the process id to"},
		&cli.BoolFlag{Name: "no-subreaper", Usage: "disable the use of the subreaper used to reap reparented processes"},
		&cli.BoolFlag{Name: "no-pivot", Usage: "do not use pivot root to jail process inside rootfs"},
		&cli.StringFlag{Name: "lsm-profile", Usage: "Specify an LSM profile to be used during restore in the form of TYPE:NAME."},
		&cli.StringFlag{Name: "lsm-mount-context", Usage: "Specify an LSM mount context to be used during restore."},
	),
	Action: unsupportedCriu,
}
