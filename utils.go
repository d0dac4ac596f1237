package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/config"
	"github.com/kabuto-runtime/kabuto/container"
	"github.com/kabuto-runtime/kabuto/vmstate"
)

const unixCloexec = unix.O_CLOEXEC

// closeExecFrom marks every inherited fd from minFd up close-on-exec, so
// that nothing kabuto starts (QEMU, shims, hooks) keeps a descriptor its
// caller leaked to it (containerd's ttrpc socket, podman's port reservations).
func closeExecFrom(minFd int) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < minFd {
			continue
		}
		unix.CloseOnExec(fd)
	}
}

// checkArgs enforces the number of positional arguments.
func checkArgs(c *cli.Context, n int) error {
	if c.NArg() != n {
		return fmt.Errorf("%s: %q requires exactly %d argument(s)", os.Args[0], c.Command.Name, n)
	}
	return nil
}

// containerID returns the first argument, checked.
func containerID(c *cli.Context) (string, error) {
	id := c.Args().First()
	if err := vmstate.ValidateID(id); err != nil {
		if errors.Is(err, vmstate.ErrInvalidID) {
			return "", fmt.Errorf("invalid container id %q: %w", id, err)
		}
		return "", err
	}
	return id, nil
}

// oneContainer is the start of every verb that takes just a container id:
// the argument count, the id, and the runtime.
func oneContainer(c *cli.Context) (string, *container.Runtime, error) {
	if err := checkArgs(c, 1); err != nil {
		return "", nil, err
	}
	id, err := containerID(c)
	if err != nil {
		return "", nil, err
	}
	r, err := newRuntime(c)
	if err != nil {
		return "", nil, err
	}
	return id, r, nil
}

// newRuntime builds the container runtime from the global flags.
func newRuntime(c *cli.Context) (*container.Runtime, error) {
	cfg, err := config.Load(c.String("config"))
	if err != nil {
		return nil, err
	}
	root := c.String("root")
	if !filepath.IsAbs(root) {
		if root, err = filepath.Abs(root); err != nil {
			return nil, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own binary: %w", err)
	}
	var shimArgs []string
	if l := c.String("log"); l != "" {
		if abs, err := filepath.Abs(l); err == nil {
			l = abs
		}
		shimArgs = append(shimArgs, "--log", l, "--log-format", c.String("log-format"))
	}
	if c.String("config") != "" {
		shimArgs = append(shimArgs, "--config", c.String("config"))
	}
	return &container.Runtime{
		Store:         vmstate.Store{Root: root},
		Config:        cfg,
		Self:          self,
		ShimArgs:      shimArgs,
		SystemdCgroup: c.Bool("systemd-cgroup"),
		Warn:          func(f string, a ...any) { logrus.Warnf(f, a...) },
	}, nil
}

// notExist maps the state store's error to runc's wording.
func notExist(id string, err error) error {
	if vmstate.IsNotExist(err) {
		return fmt.Errorf("container %s does not exist", id)
	}
	return err
}
