package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestMedian(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		in   durations
		want time.Duration
	}{
		{nil, 0},
		{durations{5 * ms}, 5 * ms},
		{durations{9 * ms, 1 * ms, 5 * ms}, 5 * ms},
		{durations{4 * ms, 1 * ms, 3 * ms, 2 * ms}, 2500 * time.Microsecond},
	} {
		if got := c.in.median(); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	d := durations{3 * ms, 1 * ms, 2 * ms}
	if d.spread() != "2.0 ms [1.0–3.0]" {
		t.Errorf("spread = %q", d.spread())
	}
	if d[0] != 3*ms {
		t.Error("median sorted its receiver in place")
	}
}

func TestParseRollup(t *testing.T) {
	in := `55d0c0000000-7ffd5e5f0000 ---p 00000000 00:00 0                          [rollup]
Rss:              153332 kB
Pss:              141030 kB
Pss_Dirty:        109544 kB
Pss_Anon:         109544 kB
Pss_File:          31486 kB
Pss_Shmem:             0 kB
`
	m, err := parseRollup(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if m != (memUse{Rss: 153332, Pss: 141030, PssAnon: 109544, PssFile: 31486}) {
		t.Errorf("got %+v", m)
	}
	if _, err := parseRollup(strings.NewReader("Shared_Clean: 1 kB\n")); err == nil {
		t.Error("no error for a rollup without Rss and Pss")
	}
}

func TestParseQEMUSmaps(t *testing.T) {
	in := `7ff817e00000-7ff81fe00000 rw-p 00000000 00:00 0
Size:             131072 kB
Rss:               49152 kB
Pss:               49152 kB
7ff824000000-7ff863fff000 rwxp 00000000 00:00 0
Pss:               40960 kB
7ff86a400000-7ff86b7bf000 rw-p 00000000 fe:00 5308746                    /k/vmlinux
Pss:               16380 kB
7ff869e00000-7ff86a25b000 r--p 00000000 fe:00 5309218                    /k/initrd.img
Pss:                4460 kB
556d5c725000-556d5ccbc000 r-xp 00407000 fe:00 10166304                   /usr/bin/qemu-system-x86_64
Pss:                2712 kB
556d78b35000-556d791f7000 rw-p 00000000 00:00 0                          [heap]
Pss:                3924 kB
7ff810000000-7ff810544000 rw-p 00000000 00:00 0
Pss:                5368 kB
`
	p, err := parseQEMUSmaps(strings.NewReader(in), 128, "/k/vmlinux", "/k/initrd.img")
	if err != nil {
		t.Fatal(err)
	}
	want := qemuParts{GuestRAM: 49152, TCGCache: 40960, KernelInitrd: 16380 + 4460, QEMUFiles: 2712, Other: 3924 + 5368}
	if p != want {
		t.Errorf("got %+v, want %+v", p, want)
	}
}

func TestMeminfo(t *testing.T) {
	m := meminfo("MemTotal:         112740 kB\nMemFree:           85300 kB\nHugePages_Total:       0\nbogus\n")
	if m["MemTotal"] != 112740 || m["MemFree"] != 85300 || m["HugePages_Total"] != 0 || len(m) != 3 {
		t.Errorf("got %v", m)
	}
}

func TestParseStamps(t *testing.T) {
	d, err := parseStamps("x\nSTAMP 1795881142 152578\nnoise\nSTAMP 1795881143 52578\n")
	if err != nil || d != 900*time.Millisecond {
		t.Errorf("got %v, %v", d, err)
	}
	if _, err := parseStamps("STAMP 1 2\n"); err == nil {
		t.Error("no error with one stamp")
	}
	if _, err := parseStamps("STAMP 1 x\nSTAMP 2 3\n"); err == nil {
		t.Error("no error for a bad stamp")
	}
}

// run is a synthetic profiled run: QEMU seen at 10 ms, its socket at 30,
// guest clock zero at 60 (the kernel lines arrive 1–3 ms after they are
// printed), /init at 60+200, the agent started at 300 and ready at 320.
func syntheticRun() *profileRun {
	ms := func(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }
	return &profileRun{
		qemuSeen: ms(10), sockSeen: ms(30), qemuGone: ms(560), end: ms(570),
		lines: []stamped{
			{ms(63), "[    0.000000] Linux version 6.1.192-kabuto (kabuto@kabuto) #1 SMP"},
			{ms(62), "[    0.002000] Zone ranges:"},
			{ms(112), "[    0.050000] NET: Registered PF_INET6 protocol family"},
			{ms(261), "[    0.200000] Run /init as init process"},
			{ms(320), "kabuto-agent: guest ready in 20ms (kernel 6.1.192-kabuto, uptime 0.26s)"},
			{ms(321), "kabuto-agent: request hello"},
			{ms(340), "kabuto-agent: first hello 40ms after serve began (uptime 0.28s)"},
			{ms(350), "kabuto-agent: request create"},
			{ms(440), "kabuto-agent: container-init init ready in 88ms"},
			{ms(445), "kabuto-agent: request attach-stdout"},
			{ms(470), "kabuto-agent: request network"},
			{ms(500), "kabuto-agent: request start"},
		},
	}
}

func TestAnalyze(t *testing.T) {
	p, err := analyze(syntheticRun())
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{10, 20, 30, 200, 40, 20, 20, 10, 90, 30, 30, 60, 10}
	if len(p.stages) != len(want) {
		t.Fatalf("%d stages, want %d", len(p.stages), len(want))
	}
	var sum time.Duration
	for i, s := range p.stages {
		if s.d != want[i]*time.Millisecond {
			t.Errorf("stage %d %q = %v, want %v", i, s.name, s.d, want[i]*time.Millisecond)
		}
		sum += s.d
	}
	if sum != p.total || p.total != 570*time.Millisecond {
		t.Errorf("stages add up to %v, total %v", sum, p.total)
	}
	if p.kernel != "6.1.192-kabuto" {
		t.Errorf("kernel %q", p.kernel)
	}
	if len(p.gaps) != 3 || p.gaps[2].d != 150*time.Millisecond || p.gaps[2].after != "Run /init as init process" {
		t.Errorf("gaps %+v", p.gaps)
	}
}

func TestAnalyzeRefusesHoles(t *testing.T) {
	pr := syntheticRun()
	pr.lines = pr.lines[:len(pr.lines)-1] // no "request start"
	if _, err := analyze(pr); err == nil {
		t.Error("no error without the start request")
	}
	pr = syntheticRun()
	pr.qemuGone = -1
	if _, err := analyze(pr); err == nil {
		t.Error("no error without QEMU's exit")
	}
}

func TestSummarize(t *testing.T) {
	a, _ := analyze(syntheticRun())
	r2 := syntheticRun()
	r2.end += 100 * time.Millisecond
	r2.lines[3] = stamped{r2.lines[3].at, "[    0.190000] Run /init as init process"}
	b, _ := analyze(r2)
	c, _ := analyze(syntheticRun())
	s := summarize([]*profile{a, b, c}, 2)
	if s.total != 570*time.Millisecond {
		t.Errorf("total %v", s.total)
	}
	if len(s.gaps) != 2 || s.gaps[0].d != 150*time.Millisecond {
		t.Errorf("gaps %+v", s.gaps)
	}
}

func TestSpliceDoc(t *testing.T) {
	doc := "# Performance\n\nprose before\n\n" + beginMarker + "\nold figures\n" + endMarker + "\n\n## Analysis\n\nprose after\n"
	got, err := spliceDoc(doc, "new figures\n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "prose before") || !strings.Contains(got, "prose after") ||
		!strings.Contains(got, "new figures") || strings.Contains(got, "old figures") {
		t.Errorf("splice lost or kept the wrong text:\n%s", got)
	}
	again, _ := spliceDoc(got, "new figures\n")
	if again != got {
		t.Error("splicing the same figures twice changed the doc")
	}
	bare, err := spliceDoc("# Hand-written\n", "gen\n")
	if err != nil || !strings.HasPrefix(bare, "# Hand-written\n") || !strings.Contains(bare, beginMarker+"\n\ngen\n\n"+endMarker) {
		t.Errorf("doc without markers: %q, %v", bare, err)
	}
	if _, err := spliceDoc(endMarker+"\n"+beginMarker+"\n", "x"); err == nil {
		t.Error("no error for markers out of order")
	}
	if empty, _ := spliceDoc("", "gen\n"); !strings.HasPrefix(empty, "# Performance") {
		t.Errorf("empty doc: %q", empty)
	}
}

func TestReportText(t *testing.T) {
	r := &report{}
	r.add(row{"1", "a", "1 ms", "runc 2 ms", "0.50×", "—", ""})
	r.add(row{"2", "longer measurement", "48.0 MiB", "", "", "≤ 48 MiB", "yes"})
	lines := strings.Split(strings.TrimRight(r.text(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines:\n%s", len(lines), r.text())
	}
	// Columns line up: "kabuto" starts at the same rune offset everywhere.
	col := strings.Index(lines[0], "kabuto")
	if []rune(lines[2])[col] != '1' || []rune(lines[3])[col] != '4' {
		t.Errorf("columns misaligned:\n%s", r.text())
	}
	md := r.markdown("repro\n")
	if !strings.Contains(md, "| 2 | longer measurement | 48.0 MiB |  |  | ≤ 48 MiB | yes |") {
		t.Errorf("markdown row missing:\n%s", md)
	}
}

func TestMakeBundle(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox (make deps installs busybox-static)")
	}
	dir := t.TempDir()
	if err := makeBundle(dir, bundleOpts{args: []string{"sleep", "1"}, sysAdmin: true, binds: map[string]string{"/srv/x": "/vol"}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	last := s.Mounts[len(s.Mounts)-1]
	if last.Destination != "/vol" || last.Source != "/srv/x" || last.Type != "bind" {
		t.Errorf("bind mount %+v", last)
	}
	hasAdmin := false
	for _, c := range s.Process.Capabilities.Effective {
		hasAdmin = hasAdmin || c == "CAP_SYS_ADMIN"
	}
	if !hasAdmin || s.Process.Args[0] != "sleep" {
		t.Errorf("process %+v", s.Process)
	}
	if n := s.Linux.Namespaces[len(s.Linux.Namespaces)-1]; n.Type != specs.NetworkNamespace {
		t.Errorf("no network namespace last: %+v", s.Linux.Namespaces)
	}
	if err := makeBundle(dir, bundleOpts{args: []string{"true"}, noNetNS: true}); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "config.json"))
	var s2 specs.Spec
	if err := json.Unmarshal(b, &s2); err != nil {
		t.Fatal(err)
	}
	for _, n := range s2.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace {
			t.Error("noNetNS bundle has a network namespace")
		}
	}
	for _, a := range []string{"sh", "dd", "tar", "adjtimex", "awk"} {
		if target, err := os.Readlink(filepath.Join(dir, "rootfs/bin", a)); err != nil || target != "busybox" {
			t.Errorf("rootfs/bin/%s: %q, %v", a, target, err)
		}
	}
}

func TestAnalyzeExec(t *testing.T) {
	ms := time.Millisecond
	pr := &profileRun{end: 70 * ms, lines: []stamped{
		{8 * ms, "kabuto-agent: request exec"},
		{46 * ms, "kabuto-agent: container-exec 3f24dc1a67864c59 ready in 37.0344ms"},
		{52 * ms, "kabuto-agent: request attach-stdout"},
		{55 * ms, "kabuto-agent: request wait"},
	}}
	st, err := analyzeExec(pr)
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{8 * ms, 38 * ms, 9 * ms, 15 * ms}
	for i, s := range st {
		if s.d != want[i] {
			t.Errorf("stage %q = %v, want %v", s.name, s.d, want[i])
		}
	}
	pr.lines = pr.lines[:1]
	if _, err := analyzeExec(pr); err == nil {
		t.Error("no error without the exec's ready line")
	}
}
