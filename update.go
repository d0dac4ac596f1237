package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
)

var updateCommand = &cli.Command{
	Name:      "update",
	Usage:     "update container resource constraints",
	ArgsUsage: "<container-id>",
	Description: `The update command changes the resource limits of the container's cgroup in
its VM (cgroup v2, with runc's conversions: cpu shares to cpu.weight, blkio
weight to io.weight, memory+swap to memory.swap.max). Limits come from
--resources (a file, or - for standard input: the LinuxResources JSON of the
runtime spec; then the other options are ignored, as with runc) or the
flags; zero or absent values leave a limit unchanged, -1 lifts it.
Memory values take runc's units (64m, 1g). The VM itself does not grow: a
memory limit beyond its RAM is refused. Realtime CPU limits and Intel RDT
have no counterpart in the guest and are refused.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "resources", Aliases: []string{"r"}, Usage: "path to a file containing the resources to update or '-' to read from the standard input"},
		&cli.StringFlag{Name: "blkio-weight", Usage: "Specifies per cgroup weight, range is from 10 to 1000"},
		&cli.StringFlag{Name: "cpu-period", Usage: "CPU CFS period to be used for hardcapping (in usecs). 0 to use system default"},
		&cli.StringFlag{Name: "cpu-quota", Usage: "CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period"},
		&cli.StringFlag{Name: "cpu-share", Aliases: []string{"cpu-shares"}, Usage: "CPU shares (relative weight vs. other containers)"},
		&cli.StringFlag{Name: "cpu-rt-period", Usage: "CPU realtime period (refused: the guest's cgroup v2 has no realtime limits)"},
		&cli.StringFlag{Name: "cpu-rt-runtime", Usage: "CPU realtime hardcap limit (refused: the guest's cgroup v2 has no realtime limits)"},
		&cli.StringFlag{Name: "cpuset-cpus", Usage: "CPU(s) to use"},
		&cli.StringFlag{Name: "cpuset-mems", Usage: "Memory node(s) to use"},
		&cli.StringFlag{Name: "kernel-memory", Usage: "accepted for compatibility with older runc; ignored (kernel memory limits are deprecated)"},
		&cli.StringFlag{Name: "kernel-memory-tcp", Usage: "accepted for compatibility with older runc; ignored (kernel memory limits are deprecated)"},
		&cli.StringFlag{Name: "memory", Usage: "Memory limit (in bytes)"},
		&cli.StringFlag{Name: "memory-reservation", Usage: "Memory reservation or soft_limit (in bytes)"},
		&cli.StringFlag{Name: "memory-swap", Usage: "Total memory usage (memory + swap); set '-1' to enable unlimited swap"},
		&cli.IntFlag{Name: "pids-limit", Usage: "Maximum number of pids allowed in the container"},
		&cli.StringFlag{Name: "l3-cache-schema", Usage: "The string of Intel RDT/CAT L3 cache schema (refused: no RDT in the guest)"},
		&cli.StringFlag{Name: "mem-bw-schema", Usage: "The string of Intel RDT/MBA memory bandwidth schema (refused: no RDT in the guest)"},
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
		if err := checkUpdatable(res); err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		return notExist(id, r.Update(c.Context, id, res))
	},
}

// checkUpdatable refuses what the guest cannot apply, rather than dropping
// it silently.
func checkUpdatable(res *specs.LinuxResources) error {
	if c := res.CPU; c != nil && (c.RealtimePeriod != nil && *c.RealtimePeriod != 0 || c.RealtimeRuntime != nil && *c.RealtimeRuntime != 0) {
		return errors.New("realtime CPU limits (cpu-rt-period, cpu-rt-runtime) are not supported: the container's cgroup v2 in the guest has no realtime controls")
	}
	if b := res.BlockIO; b != nil && b.Weight != nil && *b.Weight != 0 && (*b.Weight < 10 || *b.Weight > 1000) {
		return fmt.Errorf("invalid blkio weight %d: the range is from 10 to 1000", *b.Weight)
	}
	return nil
}

// ramInBytes parses a size as runc does (go-units' RAMInBytes): a number
// with an optional binary unit, k/m/g/t/p with optional "i" and "b",
// case-insensitive ("64m", "1GiB", "512 kb").
func ramInBytes(s string) (int64, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	num := strings.TrimRight(v, "kmgtpib ")
	unit := strings.TrimSpace(v[len(num):])
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || num == "" || strings.ContainsAny(num, "eE+-") {
		return 0, fmt.Errorf("invalid size: '%s'", s)
	}
	mult := map[string]float64{"": 1, "b": 1}
	for i, u := range []string{"k", "m", "g", "t", "p"} {
		m := float64(int64(1) << (10 * (i + 1)))
		mult[u], mult[u+"b"], mult[u+"i"], mult[u+"ib"] = m, m, m, m
	}
	m, ok := mult[unit]
	if !ok {
		return 0, fmt.Errorf("invalid size: '%s'", s)
	}
	if f*m >= 1<<63 {
		return 0, fmt.Errorf("invalid size: '%s' is too large", s)
	}
	return int64(f * m), nil
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
	for _, name := range []string{"l3-cache-schema", "mem-bw-schema"} {
		if c.String(name) != "" {
			return nil, fmt.Errorf("--%s: Intel RDT is not supported: the container's VM has no resctrl", name)
		}
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
		v := c.String(name)
		if v == "" {
			return nil, nil
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid value for %s: %w", name, err)
		}
		return &n, nil
	}
	// Memory sizes take units, and -1 for "no limit".
	mem := func(name string) (*int64, error) {
		v := c.String(name)
		if v == "" {
			return nil, nil
		}
		if v == "-1" {
			n := int64(-1)
			return &n, nil
		}
		n, err := ramInBytes(v)
		if err != nil {
			return nil, fmt.Errorf("invalid value for %s: %w", name, err)
		}
		return &n, nil
	}
	res.Memory = &specs.LinuxMemory{}
	res.CPU = &specs.LinuxCPU{Cpus: c.String("cpuset-cpus"), Mems: c.String("cpuset-mems")}
	var err error
	if res.Memory.Limit, err = mem("memory"); err != nil {
		return nil, err
	}
	if res.Memory.Reservation, err = mem("memory-reservation"); err != nil {
		return nil, err
	}
	if res.Memory.Swap, err = mem("memory-swap"); err != nil {
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
	if res.CPU.RealtimeRuntime, err = i64("cpu-rt-runtime"); err != nil {
		return nil, err
	}
	if res.CPU.RealtimePeriod, err = u64("cpu-rt-period"); err != nil {
		return nil, err
	}
	if v := c.String("blkio-weight"); v != "" {
		w, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("invalid value for blkio-weight: %w", err)
		}
		weight := uint16(w)
		res.BlockIO = &specs.LinuxBlockIO{Weight: &weight}
	}
	if c.IsSet("pids-limit") {
		res.Pids = &specs.LinuxPids{Limit: int64(c.Int("pids-limit"))}
	}
	return res, nil
}
