package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
)

var updateCommand = &cli.Command{
	Name:      "update",
	Usage:     "update container resource constraints",
	ArgsUsage: "<container-id>",
	Description: `The update command changes the resource limits of the container's cgroup in
its VM. Limits come from --resources (a file, or - for standard input: the
LinuxResources JSON of the runtime spec, zero fields unchanged) or the flags.
The VM itself does not grow: a memory limit beyond its RAM is refused.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "resources", Aliases: []string{"r"}, Usage: "path to a file containing the resources to update or '-' to read from the standard input"},
		&cli.StringFlag{Name: "blkio-weight", Usage: "specifies per cgroup weight, range is from 10 to 1000"},
		&cli.StringFlag{Name: "cpu-period", Usage: "CPU CFS period to be used for hardcapping (in usecs)"},
		&cli.StringFlag{Name: "cpu-quota", Usage: "CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period"},
		&cli.StringFlag{Name: "cpu-share", Usage: "CPU shares (relative weight vs. other containers)"},
		&cli.StringFlag{Name: "cpu-rt-period", Usage: "accepted for compatibility; not supported"},
		&cli.StringFlag{Name: "cpu-rt-runtime", Usage: "accepted for compatibility; not supported"},
		&cli.StringFlag{Name: "cpuset-cpus", Usage: "CPU(s) to use"},
		&cli.StringFlag{Name: "cpuset-mems", Usage: "Memory node(s) to use"},
		&cli.StringFlag{Name: "kernel-memory", Usage: "accepted for compatibility; ignored"},
		&cli.StringFlag{Name: "kernel-memory-tcp", Usage: "accepted for compatibility; ignored"},
		&cli.StringFlag{Name: "memory", Usage: "Memory limit (in bytes)"},
		&cli.StringFlag{Name: "memory-reservation", Usage: "Memory reservation or soft_limit (in bytes)"},
		&cli.StringFlag{Name: "memory-swap", Usage: "Total memory usage (memory + swap); set '-1' to enable unlimited swap"},
		&cli.IntFlag{Name: "pids-limit", Usage: "Maximum number of pids allowed in the container"},
		&cli.StringFlag{Name: "l3-cache-schema", Usage: "accepted for compatibility; not supported"},
		&cli.StringFlag{Name: "mem-bw-schema", Usage: "accepted for compatibility; not supported"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1); err != nil {
			return err
		}
		id, err := containerID(c)
		if err != nil {
			return err
		}
		res, err := updateResources(c)
		if err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		return notExist(id, r.Update(c.Context, id, res))
	},
}

func updateResources(c *cli.Context) (*specs.LinuxResources, error) {
	res := &specs.LinuxResources{}
	if src := c.String("resources"); src != "" {
		var r io.Reader = os.Stdin
		if src != "-" {
			f, err := os.Open(src)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			r = f
		}
		if err := json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(res); err != nil {
			return nil, fmt.Errorf("decode resources: %w", err)
		}
		return res, nil
	}
	i64 := func(name string) (*int64, error) {
		v := c.String(name)
		if v == "" {
			return nil, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid value for %s: %w", name, err)
		}
		return &n, nil
	}
	u64 := func(name string) (*uint64, error) {
		n, err := i64(name)
		if n == nil || err != nil {
			return nil, err
		}
		if *n < 0 {
			return nil, fmt.Errorf("invalid value for %s: negative", name)
		}
		u := uint64(*n)
		return &u, nil
	}
	res.Memory = &specs.LinuxMemory{}
	res.CPU = &specs.LinuxCPU{Cpus: c.String("cpuset-cpus"), Mems: c.String("cpuset-mems")}
	var err error
	if res.Memory.Limit, err = i64("memory"); err != nil {
		return nil, err
	}
	if res.Memory.Reservation, err = i64("memory-reservation"); err != nil {
		return nil, err
	}
	if res.Memory.Swap, err = i64("memory-swap"); err != nil {
		return nil, err
	}
	if res.CPU.Quota, err = i64("cpu-quota"); err != nil {
		return nil, err
	}
	if res.CPU.Period, err = u64("cpu-period"); err != nil {
		return nil, err
	}
	if res.CPU.Shares, err = u64("cpu-share"); err != nil {
		return nil, err
	}
	if c.IsSet("pids-limit") {
		res.Pids = &specs.LinuxPids{Limit: int64(c.Int("pids-limit"))}
	}
	return res, nil
}
