package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kabuto-runtime/kabuto/container"
)

var eventsCommand = &cli.Command{
	Name:      "events",
	Usage:     "display container events such as OOM notifications, cpu, memory, and IO usage statistics",
	ArgsUsage: "<container-id>",
	Description: `The events command displays information about the container. By default the
information is displayed once every 5 seconds, and an "oom" event as soon as
the kernel's OOM killer kills a process of the container. It ends when the
container's init exits.

The statistics are those of the container's cgroup inside its VM, in runc's
JSON shape (cgroup v2 figures, as runc reports them on a cgroup v2 host),
plus the counters of the VM's network interfaces. A paused container's VM
cannot be read: its statistics are skipped until it is resumed.`,
	Flags: []cli.Flag{
		&cli.DurationFlag{Name: "interval", Value: 5 * time.Second, Usage: "set the stats collection interval"},
		&cli.BoolFlag{Name: "stats", Usage: "display the container's stats then exit"},
	},
	Action: func(c *cli.Context) error {
		id, r, err := oneContainer(c)
		if err != nil {
			return err
		}
		var mu sync.Mutex
		enc := json.NewEncoder(os.Stdout)
		emit := func(ev container.Event) error {
			mu.Lock()
			defer mu.Unlock()
			if err := enc.Encode(ev); err != nil {
				return fmt.Errorf("write event: %w", err)
			}
			return nil
		}
		if c.Bool("stats") {
			s, err := r.Stats(c.Context, id)
			if err != nil {
				return notExist(id, err)
			}
			return emit(container.Event{Type: "stats", ID: id, Data: s})
		}
		return notExist(id, r.Events(c.Context, id, c.Duration("interval"), emit))
	},
}
