package agent

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/protocol"
)

// netClassDir is where the guest's NICs are listed (a variable for tests).
var netClassDir = "/sys/class/net"

// cgroupStats reads the cgroup v2 statistics of cg in runc's shape, the way
// runc's fs2 manager fills them. Files a controller lacks leave their
// figures zero.
func cgroupStats(cg string) *protocol.StatsResponse {
	s := &protocol.StatsResponse{Hugetlb: map[string]protocol.HugetlbStats{}}
	for k, v := range readKV(filepath.Join(cg, "cpu.stat")) {
		switch k {
		case "usage_usec":
			s.CPU.Usage.Total = v * 1000
		case "user_usec":
			s.CPU.Usage.User = v * 1000
		case "system_usec":
			s.CPU.Usage.Kernel = v * 1000
		case "nr_periods":
			s.CPU.Throttling.Periods = v
		case "nr_throttled":
			s.CPU.Throttling.ThrottledPeriods = v
		case "throttled_usec":
			s.CPU.Throttling.ThrottledTime = v * 1000
		}
	}
	s.CPUSet.CPUs = readIDList(filepath.Join(cg, "cpuset.cpus.effective"))
	s.CPUSet.Mems = readIDList(filepath.Join(cg, "cpuset.mems.effective"))

	s.Memory.Raw = readKV(filepath.Join(cg, "memory.stat"))
	s.Memory.Cache = s.Memory.Raw["file"]
	s.Memory.Usage = memoryEntry(cg, "memory")
	s.Memory.Usage.Failcnt = readKV(filepath.Join(cg, "memory.events"))["max"]
	// cgroup v1 reported memory+swap: so does runc on v2.
	swap := memoryEntry(cg, "memory.swap")
	swap.Usage += s.Memory.Usage.Usage
	if swap.Limit != math.MaxUint64 && s.Memory.Usage.Limit != math.MaxUint64 {
		swap.Limit += s.Memory.Usage.Limit
	} else {
		swap.Limit = math.MaxUint64
	}
	swap.Max = 0
	s.Memory.Swap = swap

	s.Pids.Current = readUint(filepath.Join(cg, "pids.current"))
	if limit, ok := readLimit(filepath.Join(cg, "pids.max")); ok && limit != math.MaxUint64 {
		s.Pids.Limit = limit
	}
	s.Blkio = ioStats(filepath.Join(cg, "io.stat"))
	hugeFiles, _ := filepath.Glob(filepath.Join(cg, "hugetlb.*.current"))
	for _, f := range hugeFiles {
		size := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "hugetlb."), ".current")
		if strings.Contains(size, ".") {
			continue // hugetlb.<size>.rsvd.current: reservations
		}
		s.Hugetlb[size] = protocol.HugetlbStats{
			Usage:   readUint(f),
			Failcnt: readKV(filepath.Join(cg, "hugetlb."+size+".events"))["max"],
		}
	}
	s.NetworkInterfaces = netStats(netClassDir)
	return s
}

// memoryEntry reads <prefix>.current, .max and .peak; a missing .current
// (no swap accounting) gives an empty entry, as in runc.
func memoryEntry(cg, prefix string) protocol.MemoryEntry {
	var e protocol.MemoryEntry
	usage, ok := readLimit(filepath.Join(cg, prefix+".current"))
	if !ok {
		return e
	}
	e.Usage = usage
	if limit, ok := readLimit(filepath.Join(cg, prefix+".max")); ok {
		e.Limit = limit
	} else {
		e.Limit = math.MaxUint64
	}
	e.Max = readUint(filepath.Join(cg, prefix+".peak"))
	return e
}

// readLimit reads a number or "max" (math.MaxUint64).
func readLimit(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	v := strings.TrimSpace(string(b))
	if v == "max" {
		return math.MaxUint64, true
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil
}

// readIDList parses a cpuset list ("0-3,8"), nil if absent or malformed.
func readIDList(path string) []uint16 {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	ids, err := parseIDList(strings.TrimSpace(string(b)))
	if err != nil {
		return nil
	}
	return ids
}

func parseIDList(s string) ([]uint16, error) {
	var ids []uint16
	if s == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil {
				return nil, err
			}
		}
		if b < a || b-a > 4096 {
			return nil, fmt.Errorf("bad range %q", part)
		}
		for i := a; i <= b; i++ {
			ids = append(ids, uint16(i))
		}
	}
	return ids, nil
}

// ioStats maps io.stat to cgroup v1's tables as runc does: rbytes/wbytes
// are the service bytes, rios/wios the serviced operations.
func ioStats(path string) protocol.BlkioStats {
	var s protocol.BlkioStats
	f, err := os.Open(path)
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		maj, min, ok := strings.Cut(fields[0], ":")
		if !ok {
			continue
		}
		major, err1 := strconv.ParseUint(maj, 10, 64)
		minor, err2 := strconv.ParseUint(min, 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		for _, kv := range fields[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			e := protocol.BlkioEntry{Major: major, Minor: minor, Value: n}
			switch k {
			case "rbytes", "rios":
				e.Op = "Read"
			case "wbytes", "wios":
				e.Op = "Write"
			default:
				continue
			}
			if strings.HasSuffix(k, "bytes") {
				s.IoServiceBytesRecursive = append(s.IoServiceBytesRecursive, e)
			} else {
				s.IoServicedRecursive = append(s.IoServicedRecursive, e)
			}
		}
	}
	return s
}

// netStats reads the counters of every NIC but loopback.
func netStats(dir string) []*protocol.NetworkInterfaceStats {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []*protocol.NetworkInterfaceStats
	for _, e := range ents {
		name := e.Name()
		if name == "lo" {
			continue
		}
		st := filepath.Join(dir, name, "statistics")
		if _, err := os.Stat(st); err != nil {
			continue
		}
		r := func(f string) uint64 { return readUint(filepath.Join(st, f)) }
		out = append(out, &protocol.NetworkInterfaceStats{
			Name:    name,
			RxBytes: r("rx_bytes"), RxPackets: r("rx_packets"), RxErrors: r("rx_errors"), RxDropped: r("rx_dropped"),
			TxBytes: r("tx_bytes"), TxPackets: r("tx_packets"), TxErrors: r("tx_errors"), TxDropped: r("tx_dropped"),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// oomKills is memory.events' oom_kill count.
func oomKills(cg string) uint64 {
	return readKV(filepath.Join(cg, "memory.events"))["oom_kill"]
}

// streamEvents serves a MethodEvents stream: an EventOOM frame each time
// the container's oom_kill count grows, then an EventExit frame once the
// init has exited. It returns when the init has exited or the host closed
// the stream.
func (a *agent) streamEvents(conn net.Conn) error {
	c := a.container()
	if c == nil {
		return errors.New("no container")
	}
	events := filepath.Join(c.cgroup, "memory.events")
	changed, stop, err := watchFile(events)
	if err != nil {
		return err
	}
	defer stop()
	if err := protocol.WriteFrame(conn, protocol.Reply(nil, nil)); err != nil {
		return nil
	}
	// The host never writes after its request: a read ending means it left.
	gone := make(chan struct{})
	go func() {
		var b [1]byte
		conn.Read(b[:])
		close(gone)
	}()
	seen := oomKills(c.cgroup)
	check := func() error {
		if n := oomKills(c.cgroup); n > seen {
			seen = n
			return protocol.WriteFrame(conn, protocol.Event{Type: protocol.EventOOM, OOMKills: n})
		}
		return nil
	}
	for {
		select {
		case <-changed:
			if err := check(); err != nil {
				return nil
			}
		case <-c.init.exited:
			// An OOM kill of the init is counted before its exit is reaped.
			check()
			protocol.WriteFrame(conn, protocol.Event{Type: protocol.EventExit, ExitCode: c.init.status.ExitCode})
			return nil
		case <-gone:
			return nil
		}
	}
}

// watchFile reports modifications of a cgroup file (the kernel notifies
// inotify watchers of memory.events when a counter changes). Should inotify
// be unavailable it falls back to polling once a second.
func watchFile(path string) (<-chan struct{}, func(), error) {
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("the container's cgroup has no %s: %w", filepath.Base(path), err)
	}
	ch := make(chan struct{}, 1)
	notify := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	done := make(chan struct{})
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err == nil {
		if _, err = unix.InotifyAddWatch(fd, path, unix.IN_MODIFY); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		logf("inotify on %s: %v; polling", path, err)
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					notify()
				}
			}
		}()
		return ch, func() { close(done) }, nil
	}
	// A non-blocking fd in an os.File is pollable: Close wakes the reader.
	f := os.NewFile(uintptr(fd), "inotify")
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			notify()
		}
	}()
	return ch, func() { f.Close() }, nil
}
