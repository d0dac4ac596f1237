// Command bench measures kabuto's performance goals in one run, each as a
// median of several runs against a reference measured in the same run (runc,
// or a bare boot of the same guest): start latency (kabuto run and docker
// run), the memory of an idle container, exec latency, I/O on the 9p rootfs
// and a bind mount, density, and a profile of where a `kabuto run` spends its
// time. It prints the table and rewrites the generated part of
// docs/performance.md. `make bench` runs it; DENSITY=200 make bench runs the
// full density test.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kabuto-runtime/kabuto/config"
	"github.com/kabuto-runtime/kabuto/qemu"
)

// bench carries what every measurement needs.
type bench struct {
	work     string
	kabuto   *ociRuntime
	runc     *ociRuntime // nil without runc
	cfg      *config.Config
	confPath string
	rep      *report

	runs, ioRuns, profileRuns int
	density, batch            int
	untarFiles                int
	untarOn                   map[string]bool

	trueBundle, sleepBundle string

	// hvExtra are the -hypervisor lines of a variant run.
	hvExtra string

	// Filled by the memory and exec measurements, used by density.
	singlePss int64
	aloneExec durations
}

var sections = []string{"start", "docker", "template", "profile", "memory", "io", "density"}

func main() {
	runs := flag.Int("runs", 7, "timed runs per latency measurement, after one warm-up (at least 5)")
	ioRuns := flag.Int("io-runs", 5, "timed runs per I/O measurement (at least 5)")
	profileRuns := flag.Int("profile-runs", 5, "profiled kabuto runs for the boot profile")
	density := flag.Int("density", envInt("DENSITY", 20), "idle containers for the density test (env DENSITY)")
	batch := flag.Int("batch", envInt("DENSITY_BATCH", 5), "containers started at a time in the density test (env DENSITY_BATCH)")
	untar := flag.Int("untar-files", 5000, "small files in the metadata (untar) test")
	untarOn := flag.String("untar-on", "rootfs", "where to run the untar test: rootfs, bind or rootfs,bind (both go through the same 9p share)")
	hvExtra := flag.String("hypervisor", "", "extra [hypervisor] lines for kabuto's configuration, to measure a variant (e.g. 'tcg_tb_size_mib = 16')")
	only := flag.String("only", "", "comma-separated subset of "+strings.Join(sections, ",")+" (the doc is written only by a full run of the default configuration)")
	doc := flag.String("doc", "docs/performance.md", "doc whose generated part to rewrite (empty: none)")
	flag.Parse()
	if *runs < 5 || *ioRuns < 5 {
		fatal("medians need at least 5 runs (-runs, -io-runs)")
	}
	want := map[string]bool{}
	for _, s := range sections {
		want[s] = *only == ""
	}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if _, ok := want[s]; !ok {
			fatal("unknown section " + s + " in -only")
		}
		want[s] = true
	}

	kabutoBin, kernel, initrd := os.Getenv("KABUTO_BIN"), os.Getenv("KABUTO_KERNEL"), os.Getenv("KABUTO_INITRD")
	if kabutoBin == "" || kernel == "" || initrd == "" {
		fatal("set KABUTO_BIN, KABUTO_KERNEL and KABUTO_INITRD (make bench does)")
	}
	work, err := os.MkdirTemp("", "kabuto-bench-")
	check(err)
	b := &bench{
		work: work, rep: &report{}, runs: *runs, ioRuns: *ioRuns, profileRuns: *profileRuns,
		density: *density, batch: max(*batch, 1), untarFiles: *untar, hvExtra: *hvExtra,
		untarOn: map[string]bool{},
	}
	for _, w := range strings.Split(*untarOn, ",") {
		if w = strings.TrimSpace(w); w != "rootfs" && w != "bind" {
			fatal("-untar-on takes rootfs, bind or both")
		}
		b.untarOn[w] = true
	}
	cleanups = append(cleanups, func() { os.RemoveAll(work) })
	b.confPath = filepath.Join(work, "kabuto.toml")
	conf := fmt.Sprintf("[hypervisor]\nkernel = %q\ninitrd = %q\n", kernel, initrd)
	if *hvExtra != "" {
		conf += strings.ReplaceAll(*hvExtra, ";", "\n") + "\n"
	}
	check(os.WriteFile(b.confPath, []byte(conf), 0o644))
	b.cfg, err = config.Load(b.confPath)
	check(err)
	b.kabuto = newRuntime("kabuto", kabutoBin, filepath.Join(work, "kroot"), "--config", b.confPath)
	cleanups = append([]func(){b.kabuto.cleanup}, cleanups...)
	if runc, err := exec.LookPath("runc"); err == nil {
		b.runc = newRuntime("runc", runc, filepath.Join(work, "rroot"))
		cleanups = append([]func(){b.runc.cleanup}, cleanups...)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintln(os.Stderr, "bench: interrupted, cleaning up")
		runCleanups()
		os.Exit(128 + int(s.(syscall.Signal)))
	}()

	b.trueBundle = filepath.Join(work, "true")
	check(makeBundle(b.trueBundle, bundleOpts{args: []string{"/bin/true"}}))
	b.sleepBundle = filepath.Join(work, "sleep")
	check(makeBundle(b.sleepBundle, bundleOpts{args: []string{"sleep", "100000"}}))

	began := time.Now()
	b.rep.machine = machineInfo(b, "start")
	fmt.Printf("kabuto bench: medians of %d runs (I/O: %d), density %d in batches of %d\n", b.runs, b.ioRuns, b.density, b.batch)
	for _, kv := range b.rep.machine {
		fmt.Printf("  %-22s %s\n", kv[0]+":", kv[1])
	}
	steps := []struct {
		name string
		f    func()
	}{
		{"start", b.benchStart},
		{"docker", b.benchDocker},
		{"template", b.benchTemplate},
		{"profile", b.benchProfile},
		{"memory", b.benchMemoryExec},
		{"io", b.benchIO},
		{"density", b.benchDensity},
	}
	var loads []string
	for _, s := range steps {
		if !want[s.name] {
			continue
		}
		t := time.Now()
		loads = append(loads, s.name+" "+loadAvg1())
		fmt.Printf("== %s (load %s)\n", s.name, loadAvg1())
		s.f()
		fmt.Printf("   (%s took %.0f s)\n", s.name, time.Since(t).Seconds())
	}
	b.rep.machine = append(b.rep.machine, [2]string{"1-min load average as each part began", strings.Join(loads, ", ")})
	b.rep.machine = append(b.rep.machine, machineInfo(b, "end")...)
	b.rep.machine = append(b.rep.machine, [2]string{"bench wall time", fmt.Sprintf("%.0f s", time.Since(began).Seconds())})
	runCleanups()

	fmt.Println()
	fmt.Print(b.rep.text())
	for _, s := range b.rep.sections {
		fmt.Printf("\n%s\n%s", s.title, s.body)
	}
	if *doc != "" && *only == "" && *hvExtra == "" {
		check(writeDoc(*doc, b.rep.markdown(reproduce(b))))
		fmt.Printf("\nwrote %s\n", *doc)
	}
}

func reproduce(b *bench) string {
	return fmt.Sprintf("```sh\n"+
		"make deps install                # QEMU, runc, busybox, the guest kernel and initrd; docker rows use the installed kabuto\n"+
		"make bench                       # this page (default density %d; 5–8 minutes on 2 cores under TCG)\n"+
		"DENSITY=200 make bench           # the full density run (stops early if host memory runs short)\n"+
		"make build guest && KABUTO_BIN=$PWD/build/kabuto KABUTO_KERNEL=$PWD/build/vmlinux \\\n"+
		"  KABUTO_INITRD=$PWD/build/kabuto-initrd.img go run ./tests/bench -only memory -doc ''   # one part\n"+
		"```\n", b.density)
}

var cleanups []func()

func runCleanups() {
	for _, c := range cleanups {
		c()
	}
	cleanups = nil
}

func fatal(msg string) {
	fmt.Fprintln(os.Stderr, "bench:", msg)
	runCleanups()
	os.Exit(1)
}

func check(err error) {
	if err != nil {
		fatal(err.Error())
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// loadAvg1 is the 1-minute load average: above the number of cores, the
// figures of that part are noisier than usual.
func loadAvg1() string {
	l, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(l)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// machineInfo describes the host; at "end" only what changes (the load).
func machineInfo(b *bench, when string) [][2]string {
	load := func() string {
		l, _ := os.ReadFile("/proc/loadavg")
		f := strings.Fields(string(l))
		if len(f) < 3 {
			return "?"
		}
		return strings.Join(f[:3], " ")
	}
	if when == "end" {
		return [][2]string{{"load average at end", load()}}
	}
	cpu := "?"
	if ci, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(ci), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	accel := "?"
	if a, err := qemu.DetectAccel(b.cfg.Hypervisor.Accel); err == nil {
		accel = a.Name
	}
	qv := "?"
	if out, err := exec.Command(b.cfg.Hypervisor.Path, "--version").Output(); err == nil {
		qv = strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "QEMU emulator version ")
	}
	var uts syscall.Utsname
	syscall.Uname(&uts)
	release := make([]byte, 0, len(uts.Release))
	for _, c := range uts.Release {
		if c == 0 {
			break
		}
		release = append(release, byte(c))
	}
	memTotal := "?"
	if mi, err := os.ReadFile("/proc/meminfo"); err == nil {
		memTotal = mib(meminfo(string(mi))["MemTotal"])
	}
	commit := "?"
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			commit += " (with uncommitted changes)"
		}
	}
	others := 0
	if out, err := exec.Command("pgrep", "-c", "-f", "^[^ ]*qemu-system").Output(); err == nil {
		others, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	}
	hc := b.cfg.Hypervisor
	return [][2]string{
		{"date", time.Now().UTC().Format("2006-01-02 15:04 UTC")},
		{"kabuto commit", commit},
		{"CPU", fmt.Sprintf("%s, %d cores", cpu, goruntime.NumCPU())},
		{"host memory", memTotal},
		{"accelerator", accel},
		{"QEMU", qv},
		{"host kernel", string(release)},
		{"guest", fmt.Sprintf("%s, %s, %d vCPU, %d MiB, 9p msize %d, free page reporting %v, tb-size %s, host THP for QEMU %v",
			filepath.Base(hc.Kernel), hc.MachineType, hc.VCPUs, hc.MemoryMiB, hc.Msize9P, hc.FreePageReporting, tbSize(hc.TBSizeMiB), hc.TransparentHugepages)},
		{"configuration variant (-hypervisor)", orNone(b.hvExtra)},
		{"other QEMU guests running at start", strconv.Itoa(others)},
		{"load average at start", load()},
	}
}

func orNone(s string) string {
	if s == "" {
		return "none (defaults)"
	}
	return s
}

func tbSize(n int) string {
	if n == 0 {
		return "QEMU default"
	}
	return fmt.Sprintf("%d MiB", n)
}
