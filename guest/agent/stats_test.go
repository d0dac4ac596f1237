package agent

import (
	"encoding/json"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/kabuto-runtime/kabuto/protocol"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for f, c := range files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCgroupStats(t *testing.T) {
	cg := t.TempDir()
	writeFiles(t, cg, map[string]string{
		"cpu.stat":                     "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 7\nnr_throttled 2\nthrottled_usec 30\n",
		"cpuset.cpus.effective":        "0-1,3\n",
		"cpuset.mems.effective":        "0\n",
		"memory.current":               "4096\n",
		"memory.max":                   "max\n",
		"memory.peak":                  "8192\n",
		"memory.events":                "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
		"memory.swap.current":          "100\n",
		"memory.swap.max":              "max\n",
		"memory.stat":                  "anon 100\nfile 200\n",
		"pids.current":                 "3\n",
		"pids.max":                     "max\n",
		"io.stat":                      "254:0 rbytes=4096 wbytes=512 rios=2 wios=1 dbytes=0 dios=0\n",
		"hugetlb.2MB.current":          "2097152\n",
		"hugetlb.2MB.events":           "max 3\n",
		"hugetlb.1GB.current":          "0\n",
		"cgroup.procs":                 "12\n34\n",
		"net/lo/statistics/x":          "",
		"net/eth0/statistics/rx_bytes": "10\n",
	})
	netClassDir = filepath.Join(cg, "net")
	defer func() { netClassDir = "/sys/class/net" }()
	os.WriteFile(filepath.Join(cg, "net/eth0/statistics/tx_packets"), []byte("5\n"), 0o644)

	s := cgroupStats(cg)
	want := protocol.CPUStats{
		Usage:      protocol.CPUUsage{Total: 1500000, User: 1000000, Kernel: 500000},
		Throttling: protocol.Throttling{Periods: 7, ThrottledPeriods: 2, ThrottledTime: 30000},
	}
	if !reflect.DeepEqual(s.CPU, want) {
		t.Errorf("cpu %+v", s.CPU)
	}
	if !reflect.DeepEqual(s.CPUSet.CPUs, []uint16{0, 1, 3}) || !reflect.DeepEqual(s.CPUSet.Mems, []uint16{0}) {
		t.Errorf("cpuset %+v", s.CPUSet)
	}
	m := s.Memory
	if m.Usage != (protocol.MemoryEntry{Limit: math.MaxUint64, Usage: 4096, Max: 8192, Failcnt: 4}) {
		t.Errorf("memory usage %+v", m.Usage)
	}
	if m.Swap.Usage != 4196 || m.Swap.Limit != math.MaxUint64 {
		t.Errorf("memory+swap %+v", m.Swap)
	}
	if m.Cache != 200 || m.Raw["anon"] != 100 {
		t.Errorf("memory raw %+v", m)
	}
	if s.Pids != (protocol.PidsStats{Current: 3}) {
		t.Errorf("pids %+v", s.Pids)
	}
	wantIO := protocol.BlkioStats{
		IoServiceBytesRecursive: []protocol.BlkioEntry{{Major: 254, Op: "Read", Value: 4096}, {Major: 254, Op: "Write", Value: 512}},
		IoServicedRecursive:     []protocol.BlkioEntry{{Major: 254, Op: "Read", Value: 2}, {Major: 254, Op: "Write", Value: 1}},
	}
	if !reflect.DeepEqual(s.Blkio, wantIO) {
		t.Errorf("blkio %+v", s.Blkio)
	}
	if len(s.Hugetlb) != 2 || s.Hugetlb["2MB"] != (protocol.HugetlbStats{Usage: 2097152, Failcnt: 3}) {
		t.Errorf("hugetlb %+v", s.Hugetlb)
	}
	if len(s.NetworkInterfaces) != 1 || *s.NetworkInterfaces[0] != (protocol.NetworkInterfaceStats{Name: "eth0", RxBytes: 10, TxPackets: 5}) {
		t.Errorf("network %+v", s.NetworkInterfaces)
	}

	// runc's JSON names, and limits that are set.
	writeFiles(t, cg, map[string]string{"memory.max": "1048576\n", "memory.swap.max": "0\n", "pids.max": "50\n"})
	s = cgroupStats(cg)
	if s.Memory.Usage.Limit != 1048576 || s.Memory.Swap.Limit != 1048576 || s.Pids.Limit != 50 {
		t.Errorf("limits: %+v %+v %+v", s.Memory.Usage, s.Memory.Swap, s.Pids)
	}
	b, _ := json.Marshal(s)
	var generic map[string]any
	json.Unmarshal(b, &generic)
	for _, k := range []string{"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	if u := generic["cpu"].(map[string]any)["usage"].(map[string]any); u["kernel"] == nil || u["total"] == nil {
		t.Errorf("cpu usage JSON %v", u)
	}
}

func TestCgroupStatsEmpty(t *testing.T) {
	netClassDir = t.TempDir()
	defer func() { netClassDir = "/sys/class/net" }()
	s := cgroupStats(t.TempDir())
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	// runc prints empty tables as {} and no interfaces as null.
	var generic map[string]any
	json.Unmarshal(b, &generic)
	if h, ok := generic["hugetlb"].(map[string]any); !ok || len(h) != 0 {
		t.Errorf("hugetlb %s", b)
	}
	if generic["network_interfaces"] != nil {
		t.Errorf("network_interfaces %s", b)
	}
}

func TestParseIDList(t *testing.T) {
	for in, want := range map[string][]uint16{"": nil, "0": {0}, "0-2,5": {0, 1, 2, 5}, "3,1": {3, 1}} {
		got, err := parseIDList(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseIDList(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"a", "2-1", "0-70000", "1,"} {
		if _, err := parseIDList(bad); err == nil {
			t.Errorf("parseIDList(%q) accepted", bad)
		}
	}
}

func TestSubCgroup(t *testing.T) {
	cg := t.TempDir()
	writeFiles(t, cg, map[string]string{"sub/cgroup.procs": "", "plain/x": ""})
	if got, err := subCgroup(cg, ""); err != nil || got != cg {
		t.Errorf("empty: %q %v", got, err)
	}
	if got, err := subCgroup(cg, "sub"); err != nil || got != filepath.Join(cg, "sub") {
		t.Errorf("sub: %q %v", got, err)
	}
	if got, err := subCgroup(cg, "/sub/"); err != nil || got != filepath.Join(cg, "sub") {
		t.Errorf("/sub/: %q %v", got, err)
	}
	for _, bad := range []string{"../x", "..", "sub/../../x", "missing", "plain"} {
		if _, err := subCgroup(cg, bad); err == nil {
			t.Errorf("subCgroup(%q) accepted", bad)
		}
	}
}

func TestTreePids(t *testing.T) {
	cg := t.TempDir()
	writeFiles(t, cg, map[string]string{"cgroup.procs": "1\n", "a/cgroup.procs": "2\n3\n", "a/b/cgroup.procs": "4\n"})
	if got := treePids(cg); !reflect.DeepEqual(got, []int{1, 2, 3, 4}) {
		t.Errorf("treePids %v", got)
	}
}

// TestStreamEvents: an OOM frame per oom_kill increase, then the exit.
func TestStreamEvents(t *testing.T) {
	cg := t.TempDir()
	writeFiles(t, cg, map[string]string{"memory.events": "oom 0\noom_kill 0\n"})
	init := newProcess(protocol.InitProcess, false)
	a := &agent{ctr: &containerState{cgroup: cg, init: init}}
	host, guest := net.Pipe()
	defer host.Close()
	done := make(chan error, 1)
	go func() { done <- a.streamEvents(guest); guest.Close() }()

	host.SetDeadline(time.Now().Add(10 * time.Second))
	var resp protocol.Response
	if err := protocol.ReadFrame(host, &resp); err != nil || resp.Error != "" {
		t.Fatalf("response %+v %v", resp, err)
	}
	// A change that is not an OOM kill sends nothing; the next kill does.
	writeFiles(t, cg, map[string]string{"memory.events": "oom 1\noom_kill 0\n"})
	time.Sleep(50 * time.Millisecond)
	writeFiles(t, cg, map[string]string{"memory.events": "oom 2\noom_kill 2\n"})
	var ev protocol.Event
	if err := protocol.ReadFrame(host, &ev); err != nil || ev != (protocol.Event{Type: protocol.EventOOM, OOMKills: 2}) {
		t.Fatalf("event %+v %v", ev, err)
	}
	init.status = protocol.WaitResponse{ExitCode: 137, Signal: 9}
	close(init.exited)
	ev = protocol.Event{}
	if err := protocol.ReadFrame(host, &ev); err != nil || ev != (protocol.Event{Type: protocol.EventExit, ExitCode: 137}) {
		t.Fatalf("exit event %+v %v", ev, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestStreamEventsHostLeaves: the stream ends when the host closes it.
func TestStreamEventsHostLeaves(t *testing.T) {
	cg := t.TempDir()
	writeFiles(t, cg, map[string]string{"memory.events": "oom_kill 0\n"})
	a := &agent{ctr: &containerState{cgroup: cg, init: newProcess(protocol.InitProcess, false)}}
	host, guest := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- a.streamEvents(guest) }()
	var resp protocol.Response
	if err := protocol.ReadFrame(host, &resp); err != nil {
		t.Fatal(err)
	}
	host.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("streamEvents did not return after the host left")
	}
	// Without memory.events (no memory controller) the stream is refused.
	a.ctr.cgroup = t.TempDir()
	if err := a.streamEvents(guest); err == nil {
		t.Error("streamEvents without memory.events succeeded")
	}
}
