package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// benchStart: goal 1, `kabuto run` of /bin/true against runc run and a bare
// boot of the same guest to its agent.
func (b *bench) benchStart() {
	noNet := filepath.Join(b.work, "true-nonet")
	check(makeBundle(noNet, bundleOpts{args: []string{"/bin/true"}, noNetNS: true}))
	withNIC := filepath.Join(b.work, "true-nic")
	check(makeBundle(withNIC, bundleOpts{args: []string{"/bin/true"}, noopHook: true}))
	n := 0
	fs := []func() error{
		func() error {
			n++
			return b.kabuto.runOnce(noNet, fmt.Sprintf("run%d", n))
		},
		func() error {
			n++
			return b.kabuto.runOnce(b.trueBundle, fmt.Sprintf("run%d", n))
		},
		func() error {
			vm, err := startBareVM(b.work, b.cfg)
			if err == nil {
				vm.stop()
			}
			return err
		},
		func() error {
			n++
			return b.kabuto.runOnce(withNIC, fmt.Sprintf("run%d", n))
		},
	}
	if b.runc != nil {
		fs = append(fs, func() error {
			n++
			return b.runc.runOnce(b.trueBundle, fmt.Sprintf("run%d", n))
		})
	}
	ds, err := interleaved(b.runs, fs...)
	check(err)
	kabutoNoNet, kabutoRun, boot, kabutoNIC := ds[0], ds[1], ds[2], ds[3]
	fmt.Printf("   kabuto run %s, bare boot %s\n", kabutoRun.spread(), boot.spread())
	b.rep.add(row{"1", "`kabuto run` /bin/true (create, boot, run, delete)", kabutoRun.spread(),
		"bare boot to agent " + boot.spread(), fmtRatio(ratio(kabutoRun.median(), boot.median())), "— (floor: bare boot)", ""})
	b.rep.add(row{"1", "`kabuto run` /bin/true without a network namespace (the container shares the guest's)", kabutoNoNet.spread(),
		"with a new one (above) " + kabutoRun.spread(), fmtRatio(ratio(kabutoNoNet.median(), kabutoRun.median())), "—", ""})
	b.rep.add(row{"1", "`kabuto run` /bin/true with a no-op prestart hook (the VM keeps a virtio-net NIC, parked at start)", kabutoNIC.spread(),
		"without the hook (no NIC) " + kabutoRun.spread(), fmtRatio(ratio(kabutoNIC.median(), kabutoRun.median())), "—", ""})
	if b.runc == nil {
		b.rep.skip("runc rows: runc is not installed")
		return
	}
	runcRun := ds[4]
	fmt.Printf("   runc run %s\n", runcRun.spread())
	b.rep.add(row{"1", "`kabuto run` /bin/true", kabutoRun.spread(), "`runc run` " + runcRun.spread(),
		fmtRatio(ratio(kabutoRun.median(), runcRun.median())), "—", ""})
}

// benchDocker: goal 1, `docker run --rm` with kabuto against runc. dockerd
// comes from tests/clients/setup.sh (runtime kabuto, image kabuto-bb); the
// rows are skipped with the reason when it is not available.
func (b *bench) benchDocker() {
	if reason := dockerReady(); reason != "" {
		b.rep.skip("docker rows: %s", reason)
		return
	}
	kabutoPath := dockerKabutoPath()
	docker := func(rt string) func() error {
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "--runtime", rt, "kabuto-bb", "true").CombinedOutput()
			if err != nil {
				return fmt.Errorf("docker run --runtime %s: %v: %s", rt, err, strings.TrimSpace(string(out)))
			}
			return nil
		}
	}
	ds, err := interleaved(b.runs, docker("kabuto"), docker("runc"))
	if err != nil {
		b.rep.skip("docker rows: %v", err)
		return
	}
	k, r := ds[0], ds[1]
	fmt.Printf("   docker run --rm: kabuto %s, runc %s\n", k.spread(), r.spread())
	b.rep.add(row{"1", "`docker run --rm kabuto-bb true` (bridge network)", k.spread(), "same with runc " + r.spread(),
		fmtRatio(ratio(k.median(), r.median())), "—", ""})
	note := "docker runs the kabuto registered in /etc/docker/daemon.json"
	if kabutoPath != "" {
		note += fmt.Sprintf(" (%s, %s)", kabutoPath, installedVersion(kabutoPath))
	}
	b.rep.machine = append(b.rep.machine, [2]string{"docker rows", note + ", with its configured guest"})
}

// dockerReady returns why the docker rows cannot run, or "". It runs
// tests/clients/setup.sh when dockerd is not up or lacks the runtime or
// the image.
func dockerReady() string {
	if _, err := exec.LookPath("docker"); err != nil {
		return "docker is not installed"
	}
	ok := func() bool {
		out, err := exec.Command("docker", "info", "--format", "{{json .Runtimes}}").Output()
		if err != nil || !strings.Contains(string(out), `"kabuto"`) {
			return false
		}
		return exec.Command("docker", "image", "inspect", "kabuto-bb:latest").Run() == nil
	}
	if ok() {
		return ""
	}
	setup := "tests/clients/setup.sh"
	if _, err := os.Stat(setup); err != nil {
		return "dockerd is not up with runtime kabuto and image kabuto-bb, and " + setup + " is not here"
	}
	if _, err := os.Stat("/usr/local/bin/kabuto"); err != nil {
		return "dockerd needs an installed kabuto (make install) for " + setup
	}
	fmt.Println("   starting the docker set-up:", setup)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "bash", setup).CombinedOutput(); err != nil {
		return fmt.Sprintf("%s failed: %v: %s", setup, err, lastLine(string(out)))
	}
	if !ok() {
		return "dockerd still lacks runtime kabuto or image kabuto-bb after " + setup
	}
	return ""
}

func dockerKabutoPath() string {
	out, err := exec.Command("docker", "info", "--format", `{{(index .Runtimes "kabuto").Path}}`).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func installedVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "version unknown"
	}
	for _, l := range strings.Split(string(out), "\n") {
		if c, ok := strings.CutPrefix(l, "commit: "); ok {
			return "commit " + c
		}
	}
	return "version unknown"
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

// benchProfile: goal 6, where the time of a `kabuto run` goes.
func (b *bench) benchProfile() {
	if strings.Contains(b.hvExtra, "kernel_params") || strings.Contains(b.hvExtra, "debug_console") {
		b.rep.skip("boot profile: it sets kernel_params and debug_console itself, and -hypervisor sets one of them")
		return
	}
	conf := filepath.Join(b.work, "kabuto-profile.toml")
	text, err := os.ReadFile(b.confPath)
	check(err)
	// debug_console: printk and the agent's log lines on the console;
	// printk.time=1: the kernel's timestamps.
	check(os.WriteFile(conf, append(text, []byte("debug_console = true\nkernel_params = \"printk.time=1\"\n")...), 0o644))
	k := newRuntime("kabuto", b.kabuto.bin, b.kabuto.root, "--config", conf)
	var ps []*profile
	var plain durations
	for i := -1; i < b.profileRuns; i++ {
		id := fmt.Sprintf("prof%d", i+1)
		// A plain run beside each profiled one: what watching costs.
		t := time.Now()
		check(b.kabuto.runOnce(b.trueBundle, id+"p"))
		if i >= 0 {
			plain = append(plain, time.Since(t))
		}
		stop := make(chan struct{})
		done := make(chan *profileRun)
		t0 := time.Now()
		go func() { done <- watchStateDir(filepath.Join(k.root, id), t0, time.Millisecond, stop, 0) }()
		err := k.runOnce(b.trueBundle, id)
		end := time.Since(t0)
		close(stop)
		pr := <-done
		pr.end = end
		check(err)
		if i < 0 {
			continue // warm-up
		}
		p, err := analyze(pr)
		if err != nil {
			b.rep.skip("boot profile run %d: %v", i+1, err)
			continue
		}
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		return
	}
	s := summarize(ps, 6)
	var rows [][]string
	var sum time.Duration
	for _, st := range s.stages {
		rows = append(rows, []string{st.name, ms(st.d), fmt.Sprintf("%.0f %%", 100*float64(st.d)/float64(s.total))})
		sum += st.d
	}
	rows = append(rows, []string{"**total** (median of the runs' totals)", "**" + ms(s.total) + "**", ""})
	body := fmt.Sprintf("Medians over %d profiled runs of `kabuto run` /bin/true with the guest console verbose "+
		"(`debug_console = true`, `printk.time=1`); plain runs beside them took %s (what watching costs). "+
		"Each stage ends at an event seen on the host: a file in the state dir appearing, a console line arriving "+
		"(kernel lines placed by their printk timestamps), kabuto exiting. The stage medians add up to %s.\n\n",
		s.runs, plain.spread(), ms(sum))
	body += mdTable([]string{"stage", "median", "share"}, rows)
	if len(s.gaps) > 0 {
		var g [][]string
		for _, x := range s.gaps {
			g = append(g, []string{ms(x.d), "`" + clip(x.before, 60) + "`", "`" + clip(x.after, 60) + "`"})
		}
		body += "\nThe kernel's largest gaps between two console lines (median):\n\n" +
			mdTable([]string{"gap", "from the line", "to the line"}, g)
	}
	b.rep.detail("Boot profile: where a `kabuto run` spends its time", body)
	if s.kernel != "" {
		b.rep.machine = append(b.rep.machine, [2]string{"guest kernel", s.kernel})
	}
	b.rep.add(row{"6", "boot profile: `kabuto run` with verbose console (see below)", ms(s.total),
		"plain `kabuto run` " + ms(plain.median()), fmtRatio(ratio(s.total, plain.median())), "—", ""})
	b.profileExec(k)
}

// profileExec splits `kabuto exec` /bin/true into a running container (with
// the verbose console) the same way: where goal 3's time goes.
func (b *bench) profileExec(k *ociRuntime) {
	const id = "profexec"
	check(k.start(b.sleepBundle, id))
	defer k.remove(id)
	console := filepath.Join(k.root, id, "console.log")
	var runs [][]stage
	var totals durations
	for i := -1; i < b.profileRuns; i++ {
		st, err := os.Stat(console)
		check(err)
		stop := make(chan struct{})
		done := make(chan *profileRun)
		t0 := time.Now()
		go func() { done <- watchStateDir(filepath.Join(k.root, id), t0, time.Millisecond/2, stop, st.Size()) }()
		_, err = k.exec(id, "/bin/true")
		end := time.Since(t0)
		close(stop)
		pr := <-done
		pr.end = end
		check(err)
		if i < 0 {
			continue
		}
		stages, err := analyzeExec(pr)
		if err != nil {
			b.rep.skip("exec profile run %d: %v", i+1, err)
			continue
		}
		runs = append(runs, stages)
		totals = append(totals, end)
	}
	if len(runs) == 0 {
		return
	}
	var rows [][]string
	for j, s := range runs[0] {
		var ds durations
		for _, r := range runs {
			ds = append(ds, r[j].d)
		}
		rows = append(rows, []string{s.name, ms(ds.median())})
	}
	rows = append(rows, []string{"**total** (median)", "**" + ms(totals.median()) + "**"})
	b.rep.detail("Exec profile: where a `kabuto exec` spends its time",
		fmt.Sprintf("Medians over %d profiled `kabuto exec` /bin/true into a running container, split by the agent's console lines "+
			"as for the boot profile.\n\n", len(runs))+mdTable([]string{"stage", "median"}, rows))
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
