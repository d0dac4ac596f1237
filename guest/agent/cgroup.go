package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The guest is cgroup v2 only; the container lives in containerCgroup.
const (
	cgroupRoot      = "/sys/fs/cgroup"
	containerCgroup = "/sys/fs/cgroup/container"
)

// makeContainerCgroup creates the container's cgroup with every available
// controller enabled for it (one by one: one that cannot be enabled must not
// keep the others off).
func makeContainerCgroup() (string, error) {
	if b, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		for _, c := range strings.Fields(string(b)) {
			if err := writeCgroupFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"), "+"+c); err != nil {
				logf("enable cgroup controller %s: %v", c, err)
			}
		}
	}
	if err := os.Mkdir(containerCgroup, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create container cgroup: %w", err)
	}
	return containerCgroup, nil
}

// writeCgroupFile writes an existing cgroup file (never creates one).
func writeCgroupFile(path, val string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(val)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func joinCgroup(cg string, pid int) error {
	if err := writeCgroupFile(filepath.Join(cg, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
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

// swapMax converts the OCI memory.swap (memory+swap, cgroup v1 style) to
// cgroup v2 memory.swap.max (swap alone), as runc does. ok is false when
// nothing is to be written.
func swapMax(swap, limit int64) (val string, ok bool, err error) {
	switch {
	case swap == 0:
		return "", false, nil
	case swap == -1:
		return "max", true, nil
	case swap < -1:
		return "", false, fmt.Errorf("invalid memory swap limit %d", swap)
	case limit == 0 || limit == -1:
		return "", false, errors.New("cannot set a swap limit without a memory limit")
	case swap < limit:
		return "", false, fmt.Errorf("memory+swap limit (%d) must be at least the memory limit (%d)", swap, limit)
	}
	return strconv.FormatInt(swap-limit, 10), true, nil
}

// cgroupLimit formats a limit where -1 (any negative) means none.
func cgroupLimit(v int64) string {
	if v < 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// cgroupWrite is one cgroup file to set.
type cgroupWrite struct{ file, val string }

// resourceWrites turns OCI resources into cgroup v2 file writes. Zero or
// absent fields leave a setting unchanged.
func resourceWrites(r *specs.LinuxResources) ([]cgroupWrite, error) {
	var w []cgroupWrite
	if r == nil {
		return nil, nil
	}
	if m := r.Memory; m != nil {
		var limit int64
		if m.Limit != nil {
			limit = *m.Limit
		}
		if limit != 0 {
			w = append(w, cgroupWrite{"memory.max", cgroupLimit(limit)})
		}
		if m.Reservation != nil && *m.Reservation != 0 {
			w = append(w, cgroupWrite{"memory.low", cgroupLimit(*m.Reservation)})
		}
		if m.Swap != nil {
			v, ok, err := swapMax(*m.Swap, limit)
			if err != nil {
				return nil, err
			}
			if ok {
				w = append(w, cgroupWrite{"memory.swap.max", v})
			}
		}
	}
	if c := r.CPU; c != nil {
		if c.Shares != nil && *c.Shares != 0 {
			w = append(w, cgroupWrite{"cpu.weight", strconv.FormatUint(cpuWeight(*c.Shares), 10)})
		}
		if c.Quota != nil && *c.Quota != 0 || c.Period != nil && *c.Period != 0 {
			quota, period := "max", uint64(100000)
			if c.Quota != nil && *c.Quota > 0 {
				quota = strconv.FormatInt(*c.Quota, 10)
			}
			if c.Period != nil && *c.Period != 0 {
				period = *c.Period
			}
			w = append(w, cgroupWrite{"cpu.max", fmt.Sprintf("%s %d", quota, period)})
		}
		// cpus and mems name the host's CPUs and memory nodes: the host
		// pins QEMU with them (hostcgroup.Apply); the guest's vCPUs are
		// other CPUs.
	}
	if b := r.BlockIO; b != nil && b.Weight != nil && *b.Weight != 0 {
		// runc's conversion of a blkio weight [10, 1000] to io.weight.
		bw := min(max(uint64(*b.Weight), 10), 1000)
		w = append(w, cgroupWrite{"io.weight", strconv.FormatUint(1+(bw-10)*9999/990, 10)})
	}
	if p := r.Pids; p != nil && p.Limit != 0 {
		w = append(w, cgroupWrite{"pids.max", cgroupLimit(p.Limit)})
	}
	keys := make([]string, 0, len(r.Unified))
	for k := range r.Unified {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." {
			return nil, fmt.Errorf("invalid unified cgroup key %q", k)
		}
		w = append(w, cgroupWrite{k, r.Unified[k]})
	}
	return w, nil
}

// applyResources writes the spec's limits to the cgroup. Files the guest
// kernel lacks (a controller it was built without) are skipped.
func applyResources(cg string, r *specs.LinuxResources) error {
	writes, err := resourceWrites(r)
	if err != nil {
		return err
	}
	for _, w := range writes {
		err := writeCgroupFile(filepath.Join(cg, w.file), w.val)
		if errors.Is(err, os.ErrNotExist) {
			logf("cgroup file %s missing, %s not applied", w.file, w.val)
			continue
		}
		if err != nil {
			return fmt.Errorf("set %s to %s: %w", w.file, w.val, err)
		}
	}
	return nil
}

func freeze(cg string, on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	if err := writeCgroupFile(filepath.Join(cg, "cgroup.freeze"), v); err != nil {
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
