package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/kabuto-runtime/kabuto/container"
)

var execCommand = &cli.Command{
	Name:      "exec",
	Usage:     "execute new process inside the container",
	ArgsUsage: "<container-id> <command> [command options]  || -p process.json <container-id>",
	Description: `The exec command runs a new process in the running container's VM, inside the
container's namespaces and cgroup. Its pid (in --pid-file) is a host shim
that relays its stdio and signals and exits with its exit status.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "console-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"},
		&cli.StringFlag{Name: "pidfd-socket", Usage: "accepted for compatibility with runc; not supported"},
		&cli.StringFlag{Name: "cwd", Usage: "current working directory in the container"},
		&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set environment variables"},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a pseudo-TTY"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "UID (format: <uid>[:<gid>])"},
		&cli.Int64SliceFlag{Name: "additional-gids", Aliases: []string{"g"}, Usage: "additional gids"},
		&cli.StringFlag{Name: "process", Aliases: []string{"p"}, Usage: "path to the process.json"},
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the container's process"},
		&cli.StringFlag{Name: "pid-file", Usage: "specify the file to write the process id to"},
		&cli.StringFlag{Name: "process-label", Usage: "accepted for compatibility with runc; ignored"},
		&cli.StringFlag{Name: "apparmor", Usage: "accepted for compatibility with runc; ignored"},
		&cli.BoolFlag{Name: "no-new-privs", Usage: "set the no new privileges value for the process"},
		&cli.StringSliceFlag{Name: "cap", Aliases: []string{"c"}, Usage: "add a capability to the bounding set for the process"},
		&cli.IntFlag{Name: "preserve-fds", Usage: "not supported across the VM boundary: must be 0"},
		&cli.StringSliceFlag{Name: "cgroup", Usage: "accepted for compatibility with runc; ignored"},
		&cli.BoolFlag{Name: "ignore-paused", Usage: "accepted for compatibility with runc"},
	},
	SkipFlagParsing: false,
	Action: func(c *cli.Context) error {
		if c.NArg() < 1 {
			return fmt.Errorf("%q requires a container id", c.Command.Name)
		}
		id, err := containerID(c)
		if err != nil {
			return err
		}
		if c.Int("preserve-fds") != 0 {
			return errPreserveFds
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		p, err := execProcess(c, r, id)
		if err != nil {
			return notExist(id, err)
		}
		code, err := r.Exec(c.Context, container.ExecOptions{
			ID: id, Process: p, Detach: c.Bool("detach"),
			PidFile: c.String("pid-file"), ConsoleSocket: c.String("console-socket"),
		})
		if err != nil {
			return notExist(id, err)
		}
		if !c.Bool("detach") {
			return cli.Exit("", code)
		}
		return nil
	},
}

// execProcess reads --process, or builds the process from the container's
// own and the flags, as runc does.
func execProcess(c *cli.Context, r *container.Runtime, id string) (*specs.Process, error) {
	if path := c.String("process"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var p specs.Process
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("process.json is malformed: %w", err)
		}
		if c.Bool("tty") {
			p.Terminal = true
		}
		return &p, nil
	}
	if c.NArg() < 2 {
		return nil, fmt.Errorf("%q requires a command to execute", c.Command.Name)
	}
	p, err := r.BaseProcess(id)
	if err != nil {
		return nil, err
	}
	p.Args = c.Args().Slice()[1:]
	p.Terminal = c.Bool("tty")
	if cwd := c.String("cwd"); cwd != "" {
		p.Cwd = cwd
	}
	p.Env = append(p.Env, c.StringSlice("env")...)
	if u := c.String("user"); u != "" {
		uid, gid, _ := strings.Cut(u, ":")
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("parsing %s as int for uid failed: %w", uid, err)
		}
		p.User.UID = uint32(n)
		if gid != "" {
			g, err := strconv.ParseUint(gid, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("parsing %s as int for gid failed: %w", gid, err)
			}
			p.User.GID = uint32(g)
		}
	}
	for _, g := range c.Int64Slice("additional-gids") {
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(g))
	}
	if caps := c.StringSlice("cap"); len(caps) > 0 {
		if p.Capabilities == nil {
			p.Capabilities = &specs.LinuxCapabilities{}
		}
		for _, cp := range caps {
			cp = strings.ToUpper(cp)
			if !strings.HasPrefix(cp, "CAP_") {
				cp = "CAP_" + cp
			}
			p.Capabilities.Bounding = append(p.Capabilities.Bounding, cp)
			p.Capabilities.Effective = append(p.Capabilities.Effective, cp)
			p.Capabilities.Permitted = append(p.Capabilities.Permitted, cp)
		}
	}
	if c.Bool("no-new-privs") {
		p.NoNewPrivileges = true
	}
	return p, nil
}
