package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kabuto-runtime/kabuto/protocol"
)

// The guest is cgroup v2 only; the container lives in containerCgroup.
const (
	cgroupRoot      = "/sys/fs/cgroup"
	containerCgroup = "/sys/fs/cgroup/container"
)

// makeContainerCgroup creates the container's cgroup with every available
// controller enabled for it.
func makeContainerCgroup() (string, error) {
	if b, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		var enable []string
		for _, c := range strings.Fields(string(b)) {
			enable = append(enable, "+"+c)
		}
		os.WriteFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0)
	}
	if err := os.Mkdir(containerCgroup, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create container cgroup: %w", err)
	}
	return containerCgroup, nil
}

func joinCgroup(cg string, pid int) error {
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("join container cgroup: %w", err)
	}
	return nil
}

// cpuWeight converts cgroup v1 cpu.shares [2, 262144] to v2 cpu.weight
// [1, 10000], as runc does.
func cpuWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}

// applyResources writes the spec's limits to the cgroup. Zero or absent
// fields leave a setting as it is; files the guest kernel lacks are skipped.
func applyResources(cg string, r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	set := func(file, val string) error {
		err := os.WriteFile(filepath.Join(cg, file), []byte(val), 0)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("set %s to %s: %w", file, val, err)
		}
		return nil
	}
	limit := func(v int64) string {
		if v < 0 {
			return "max"
		}
		return strconv.FormatInt(v, 10)
	}
	if m := r.Memory; m != nil {
		if m.Limit != nil && *m.Limit != 0 {
			if err := set("memory.max", limit(*m.Limit)); err != nil {
				return err
			}
		}
		if m.Reservation != nil && *m.Reservation != 0 {
			if err := set("memory.low", limit(*m.Reservation)); err != nil {
				return err
			}
		}
		if m.Swap != nil && *m.Swap != 0 {
			// v1 swap is memory+swap; v2 counts swap alone.
			swap := *m.Swap
			if swap > 0 && m.Limit != nil && *m.Limit > 0 {
				swap -= *m.Limit
			}
			if err := set("memory.swap.max", limit(swap)); err != nil {
				return err
			}
		}
	}
	if c := r.CPU; c != nil {
		if c.Shares != nil && *c.Shares != 0 {
			if err := set("cpu.weight", strconv.FormatUint(cpuWeight(*c.Shares), 10)); err != nil {
				return err
			}
		}
		if c.Quota != nil && *c.Quota != 0 || c.Period != nil && *c.Period != 0 {
			quota, period := "max", uint64(100000)
			if c.Quota != nil && *c.Quota > 0 {
				quota = strconv.FormatInt(*c.Quota, 10)
			}
			if c.Period != nil && *c.Period != 0 {
				period = *c.Period
			}
			if err := set("cpu.max", fmt.Sprintf("%s %d", quota, period)); err != nil {
				return err
			}
		}
		if c.Cpus != "" {
			if err := set("cpuset.cpus", c.Cpus); err != nil {
				return err
			}
		}
		if c.Mems != "" {
			if err := set("cpuset.mems", c.Mems); err != nil {
				return err
			}
		}
	}
	if p := r.Pids; p != nil && p.Limit != 0 {
		if err := set("pids.max", limit(p.Limit)); err != nil {
			return err
		}
	}
	return nil
}

func freeze(cg string, on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	if err := os.WriteFile(filepath.Join(cg, "cgroup.freeze"), []byte(v), 0); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(filepath.Join(cg, "cgroup.events"))
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("frozen "+v)) {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.New("the container's cgroup did not settle")
}

func readUint(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}

func readKV(path string) map[string]uint64 {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	m := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			m[k] = n
		}
	}
	return m
}

func cgroupStats(cg string) *protocol.StatsResponse {
	cpu := readKV(filepath.Join(cg, "cpu.stat"))
	s := &protocol.StatsResponse{
		CPUUsageTotal:  cpu["usage_usec"] * 1000,
		CPUUsageUser:   cpu["user_usec"] * 1000,
		CPUUsageKernel: cpu["system_usec"] * 1000,
		MemoryUsage:    readUint(filepath.Join(cg, "memory.current")),
		MemoryLimit:    readUint(filepath.Join(cg, "memory.max")),
		MemoryMaxUsage: readUint(filepath.Join(cg, "memory.peak")),
		PidsCurrent:    readUint(filepath.Join(cg, "pids.current")),
		PidsLimit:      readUint(filepath.Join(cg, "pids.max")),
		MemoryStat:     readKV(filepath.Join(cg, "memory.stat")),
	}
	return s
}

// cgroupPids lists the pids in the cgroup.
func cgroupPids(cg string) []int {
	b, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}
