package hostcgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// MinPids is the least pids.max the host cgroup gets: it holds QEMU's and the
// shims' threads, never the container's processes (those are in the guest),
// and a VMM that cannot start a thread stalls the whole VM.
const MinPids = 64

// Apply writes the resources that bound the VM as a whole to the container's
// host cgroup: CPU time (shares, quota, period — the vCPUs are threads of
// QEMU), the host CPUs and memory nodes it may use (cpuset), the tasks of
// its host processes (pids, at least MinPids) and its block I/O weight (QEMU
// does the I/O of the share). The container's own limits, memory included,
// are applied in the guest: QEMU's memory is the guest's RAM plus the VMM's
// own, so the guest's limit cannot be the host's. Values a hierarchy does not
// offer (a controller not mounted, blkio weight without CFQ/BFQ) are skipped.
func Apply(mounts []Mount, path string, res *specs.LinuxResources) error {
	if res == nil {
		return nil
	}
	for _, m := range mounts {
		dir := filepath.Join(m.Dir, path)
		var err error
		if m.V2 {
			err = applyV2(dir, res)
		} else {
			err = applyV1(dir, m.Controllers, res)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func has(cs []string, c string) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// write sets one cgroup file; a file the hierarchy lacks is skipped.
func write(dir, file, value string) error {
	p := filepath.Join(dir, file)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.WriteFile(p, []byte(value), 0); err != nil {
		return fmt.Errorf("set %s to %s: %w", p, value, err)
	}
	return nil
}

// pidsValue is pids.max for a limit: 0 leaves it (as runc does), below 0
// is no limit.
func pidsValue(p *specs.LinuxPids) string {
	if p.Limit < 0 {
		return "max"
	}
	return strconv.FormatInt(max(p.Limit, MinPids), 10)
}

func applyV1(dir string, cs []string, res *specs.LinuxResources) error {
	var ws [][2]string
	if c := res.CPU; c != nil {
		if has(cs, "cpu") {
			if c.Shares != nil && *c.Shares > 0 {
				ws = append(ws, [2]string{"cpu.shares", strconv.FormatUint(*c.Shares, 10)})
			}
			// The period first: a quota is checked against it.
			if c.Period != nil && *c.Period > 0 {
				ws = append(ws, [2]string{"cpu.cfs_period_us", strconv.FormatUint(*c.Period, 10)})
			}
			if c.Quota != nil && *c.Quota != 0 {
				ws = append(ws, [2]string{"cpu.cfs_quota_us", strconv.FormatInt(*c.Quota, 10)})
			}
		}
		if has(cs, "cpuset") {
			if c.Cpus != "" {
				ws = append(ws, [2]string{"cpuset.cpus", c.Cpus})
			}
			if c.Mems != "" {
				ws = append(ws, [2]string{"cpuset.mems", c.Mems})
			}
		}
	}
	if p := res.Pids; p != nil && p.Limit != 0 && has(cs, "pids") {
		ws = append(ws, [2]string{"pids.max", pidsValue(p)})
	}
	if b := res.BlockIO; b != nil && b.Weight != nil && *b.Weight > 0 && has(cs, "blkio") {
		ws = append(ws, [2]string{"blkio.weight", strconv.FormatUint(uint64(*b.Weight), 10)})
	}
	for _, w := range ws {
		if err := write(dir, w[0], w[1]); err != nil {
			return err
		}
	}
	return nil
}

func applyV2(dir string, res *specs.LinuxResources) error {
	var ws [][2]string
	if c := res.CPU; c != nil {
		if c.Shares != nil && *c.Shares > 0 {
			// cgroup v1 shares 2..262144 onto v2 weights 1..10000.
			w := 1 + ((*c.Shares-2)*9999)/262142
			ws = append(ws, [2]string{"cpu.weight", strconv.FormatUint(w, 10)})
		}
		if (c.Quota != nil && *c.Quota != 0) || (c.Period != nil && *c.Period > 0) {
			quota, period := "max", uint64(100000)
			if c.Quota != nil && *c.Quota > 0 {
				quota = strconv.FormatInt(*c.Quota, 10)
			}
			if c.Period != nil && *c.Period > 0 {
				period = *c.Period
			}
			ws = append(ws, [2]string{"cpu.max", quota + " " + strconv.FormatUint(period, 10)})
		}
		if c.Cpus != "" {
			ws = append(ws, [2]string{"cpuset.cpus", c.Cpus})
		}
		if c.Mems != "" {
			ws = append(ws, [2]string{"cpuset.mems", c.Mems})
		}
	}
	if p := res.Pids; p != nil && p.Limit != 0 {
		ws = append(ws, [2]string{"pids.max", pidsValue(p)})
	}
	for _, w := range ws {
		if err := write(dir, w[0], strings.TrimSpace(w[1])); err != nil {
			return err
		}
	}
	return nil
}
