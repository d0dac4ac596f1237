package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/kabuto-runtime/kabuto/container"
)

// execFailedCode is runc's exit status when exec itself fails (as opposed
// to the process's own status).
const execFailedCode = 255

var execCommand = &cli.Command{
	Name:      "exec",
	Usage:     "execute new process inside the container",
	ArgsUsage: "<container-id> <command> [command options]  || -p process.json <container-id>",
	Description: `The exec command runs a new process in the container's VM, inside the
container's namespaces and cgroup. Its pid (for --pid-file) is a host shim
that relays its stdio and signals and exits with its exit status. A failure
to exec exits 255, as with runc.

With --process, the process is read from process.json and the flags that
describe a process (--env, --cwd, --user, --cap, ...) are ignored, as runc
ignores them. The guest kernel has no AppArmor or SELinux: --apparmor and
--process-label are refused, as runc refuses them without an LSM; the same
fields of process.json are ignored (with a warning), as the container's own
are at create.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "console-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"},
		&cli.StringFlag{Name: "pidfd-socket", Usage: "path to an AF_UNIX socket which will receive a pidfd of the exec's shim"},
		&cli.StringFlag{Name: "cwd", Usage: "current working directory in the container"},
		mixedStringSlice{&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set environment variables"}},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a pseudo-TTY"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "UID (format: <uid>[:<gid>])"},
		mixedInt64Slice{&cli.Int64SliceFlag{Name: "additional-gids", Aliases: []string{"g"}, Usage: "additional gids"}},
		&cli.StringFlag{Name: "process", Aliases: []string{"p"}, Usage: "path to the process.json"},
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the container's process"},
		&cli.StringFlag{Name: "pid-file", Usage: "specify the file to write the process id to"},
		&cli.StringFlag{Name: "process-label", Usage: "set the asm process label for the process commonly used with selinux (refused: the guest has no SELinux)"},
		&cli.StringFlag{Name: "apparmor", Usage: "set the apparmor profile for the process (refused: the guest has no AppArmor)"},
		&cli.BoolFlag{Name: "no-new-privs", Usage: "set the no new privileges value for the process"},
		mixedStringSlice{&cli.StringSliceFlag{Name: "cap", Aliases: []string{"c"}, Usage: "add a capability to the bounding set for the process"}},
		&cli.IntFlag{Name: "preserve-fds", Usage: "Pass N additional file descriptors to the container (refused unless 0: descriptors cannot cross into the VM)"},
		&cli.StringSliceFlag{Name: "cgroup", Usage: "run the process in an (existing) sub-cgroup(s) of the container's cgroup in the guest. Format is [<controller>:]<cgroup>."},
		&cli.BoolFlag{Name: "ignore-paused", Usage: "allow exec in a paused container (refused all the same: a paused VM runs nothing)"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() < 1 {
			return fmt.Errorf("%q requires a container id", c.Command.Name)
		}
		id, err := containerID(c)
		if err != nil {
			return err
		}
		code, err := runExec(c, id)
		if err != nil {
			return execFailed(notExist(id, err))
		}
		if !c.Bool("detach") {
			return cli.Exit("", code)
		}
		return nil
	},
}

// runc (urfave/cli v1) lets a repeated flag mix its forms (--env A=1 -e
// B=2); urfave/cli v2 refuses that for a flag with aliases. These wrappers
// give that check one name, while Apply still registers every alias on the
// one value, so the values keep their command-line order.
type (
	mixedStringSlice struct{ *cli.StringSliceFlag }
	mixedInt64Slice  struct{ *cli.Int64SliceFlag }
)

func (f mixedStringSlice) Names() []string { return f.StringSliceFlag.Names()[:1] }
func (f mixedInt64Slice) Names() []string  { return f.Int64SliceFlag.Names()[:1] }

// execFailed reports a failed exec as runc does: logged, printed, exit 255.
func execFailed(err error) error {
	msg := "exec failed: " + strings.TrimSpace(err.Error())
	logrus.Error(msg)
	return cli.Exit(msg, execFailedCode)
}

func runExec(c *cli.Context, id string) (int, error) {
	if c.Int("preserve-fds") != 0 {
		return 0, errPreserveFds
	}
	if c.String("apparmor") != "" {
		return 0, fmt.Errorf("apparmor profile %q requested, but AppArmor is not supported by kabuto's guest kernel", c.String("apparmor"))
	}
	if c.String("process-label") != "" {
		return 0, errors.New("selinux label is specified in config, but selinux is disabled or not supported (kabuto's guest kernel has no SELinux)")
	}
	cgroup, err := subCgroupFlag(c.StringSlice("cgroup"))
	if err != nil {
		return 0, err
	}
	r, err := newRuntime(c)
	if err != nil {
		return 0, err
	}
	p, err := execProcess(c, r, id)
	if err != nil {
		return 0, err
	}
	return r.Exec(c.Context, container.ExecOptions{
		ID: id, Process: p, Detach: c.Bool("detach"),
		PidFile: c.String("pid-file"), ConsoleSocket: c.String("console-socket"),
		PidfdSocket: c.String("pidfd-socket"), Cgroup: cgroup,
		IgnorePaused: c.Bool("ignore-paused"),
	})
}

// subCgroupFlag turns runc's --cgroup values ([<controller>[,...]:]<path>)
// into the one path the guest's cgroup v2 hierarchy can take: every
// controller named must have the same path.
func subCgroupFlag(vals []string) (string, error) {
	path := ""
	seen := map[string]bool{}
	for _, v := range vals {
		parts := strings.SplitN(v, ":", 3)
		switch len(parts) {
		case 1:
			if len(vals) != 1 {
				return "", fmt.Errorf("invalid --cgroup argument: %s (missing <controller>: prefix)", v)
			}
		case 2:
			for _, ctrl := range strings.Split(parts[0], ",") {
				if seen[ctrl] {
					return "", fmt.Errorf("invalid --cgroup argument(s): controller %s specified multiple times", ctrl)
				}
				seen[ctrl] = true
			}
		default:
			return "", fmt.Errorf("invalid --cgroup argument: %s", v)
		}
		p := parts[len(parts)-1]
		if path != "" && p != path {
			return "", fmt.Errorf("invalid --cgroup arguments: the guest has one cgroup v2 hierarchy, so every controller's path must be the same (%s, %s)", path, p)
		}
		path = p
	}
	return path, nil
}

// validateProcess is runc's check of an exec'd process.
func validateProcess(p *specs.Process) error {
	if p.Cwd == "" {
		return errors.New("Cwd property must not be empty")
	}
	if !filepath.IsAbs(p.Cwd) {
		return errors.New("Cwd must be an absolute path")
	}
	if len(p.Args) == 0 {
		return errors.New("args must not be empty")
	}
	container.DropUnraisableAmbient(p)
	return nil
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
		if p.ApparmorProfile != "" || p.SelinuxLabel != "" {
			logrus.Warnf("exec: process.json's apparmorProfile %q and selinuxLabel %q are ignored: kabuto's guest kernel has neither LSM", p.ApparmorProfile, p.SelinuxLabel)
			p.ApparmorProfile, p.SelinuxLabel = "", ""
		}
		return &p, validateProcess(&p)
	}
	if c.NArg() < 2 {
		return nil, fmt.Errorf("%q requires a command to execute", c.Command.Name)
	}
	p, err := r.BaseProcess(id)
	if err != nil {
		return nil, err
	}
	p.ApparmorProfile, p.SelinuxLabel = "", ""
	p.Args = c.Args().Slice()[1:]
	p.Terminal = c.Bool("tty")
	if cwd := c.String("cwd"); cwd != "" {
		p.Cwd = cwd
	}
	p.Env = append(p.Env, c.StringSlice("env")...)
	if u := c.String("user"); u != "" {
		uid, gid, hasGid := strings.Cut(u, ":")
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("parsing %s as int for uid failed: %w", uid, err)
		}
		p.User.UID = uint32(n)
		if hasGid {
			g, err := strconv.ParseUint(gid, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("parsing %s as int for gid failed: %w", gid, err)
			}
			p.User.GID = uint32(g)
		}
	}
	for _, g := range c.Int64Slice("additional-gids") {
		if g < 0 || g > 1<<32-1 {
			return nil, fmt.Errorf("additional gid %d is out of range", g)
		}
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(g))
	}
	if caps := c.StringSlice("cap"); len(caps) > 0 {
		if p.Capabilities == nil {
			p.Capabilities = &specs.LinuxCapabilities{}
		}
		// runc adds them to every set but the inheritable one (which it
		// stopped touching for CVE-2022-29162), and so to the ambient set
		// only where the inheritable set allows it. Unknown names are
		// skipped with a warning, as runc does.
		for _, cp := range caps {
			cp = strings.ToUpper(cp)
			if !strings.HasPrefix(cp, "CAP_") {
				cp = "CAP_" + cp
			}
			if !slices.Contains(supportedCapabilities, cp) {
				logrus.Warnf("exec: ignoring unknown or unavailable capability %s", cp)
				continue
			}
			p.Capabilities.Bounding = append(p.Capabilities.Bounding, cp)
			p.Capabilities.Effective = append(p.Capabilities.Effective, cp)
			p.Capabilities.Permitted = append(p.Capabilities.Permitted, cp)
			if slices.Contains(p.Capabilities.Inheritable, cp) {
				p.Capabilities.Ambient = append(p.Capabilities.Ambient, cp)
			}
		}
	}
	if c.Bool("no-new-privs") {
		p.NoNewPrivileges = true
	}
	return p, validateProcess(p)
}
