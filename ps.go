package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/kabuto-runtime/kabuto/container"
	"github.com/kabuto-runtime/kabuto/vmstate"
)

var psCommand = &cli.Command{
	Name:      "ps",
	Usage:     "ps displays the processes running inside a container",
	ArgsUsage: "<container-id> [ps options]",
	Description: `With --format json, ps prints the host pids that stand for the container: the
init's shim, QEMU and the exec shims (docker top filters the host's "ps -ef"
with them). The table lists the processes inside the guest (every cgroup of
the container's), with the exec id of those kabuto started.

With ps options after the container id (kabuto ps <id> -o pid,comm), the
container's own ps runs inside it with them, in the container's pid
namespace; the listing then includes that ps. The container must have a ps
executable.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "select one of: table or json"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() < 1 {
			return fmt.Errorf("%q requires a container id", c.Command.Name)
		}
		id, err := containerID(c)
		if err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		switch c.String("format") {
		case "json":
			st, err := r.Store.Load(id)
			if err != nil {
				return notExist(id, err)
			}
			pids := []int{}
			if st.Status() != vmstate.Stopped {
				for _, p := range append([]vmstate.Process{st.Shim, st.QEMU}, st.ExecShims()...) {
					if p.Alive() {
						pids = append(pids, p.Pid)
					}
				}
			}
			return json.NewEncoder(os.Stdout).Encode(pids)
		case "table":
			if c.NArg() > 1 {
				return psInContainer(c, r, id, c.Args().Slice()[1:])
			}
			_, ps, err := r.Processes(c.Context, id)
			if err != nil {
				return notExist(id, err)
			}
			w := tabwriter.NewWriter(os.Stdout, 5, 1, 2, ' ', 0)
			fmt.Fprintln(w, "PID\tPPID\tUID\tEXEC\tCMD")
			for _, p := range ps.Processes {
				fmt.Fprintf(w, "%d\t%d\t%d\t%s\t%s\n", p.Pid, p.PPid, p.UID, p.Exec, p.Cmd)
			}
			return w.Flush()
		default:
			return fmt.Errorf("invalid format option")
		}
	},
}

// psInContainer runs the container's ps with the caller's options, as an
// exec of the container's own process environment.
func psInContainer(c *cli.Context, r *container.Runtime, id string, args []string) error {
	st, err := r.Store.Load(id)
	if err != nil {
		return notExist(id, err)
	}
	if st.Status() == vmstate.Stopped {
		return container.ErrNotRunning
	}
	p, err := r.BaseProcess(id)
	if err != nil {
		return err
	}
	p.Args = append([]string{"ps"}, args...)
	p.Terminal = false
	p.Cwd = "/"
	code, err := r.Exec(c.Context, container.ExecOptions{ID: id, Process: p})
	if err != nil {
		if strings.Contains(err.Error(), "executable file not found") {
			return fmt.Errorf("ps options need a ps executable in the container: %w", err)
		}
		return err
	}
	if code != 0 {
		return cli.Exit("", code)
	}
	return nil
}
