package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The boot profile times one foreground `kabuto run` of /bin/true with the
// guest console verbose (debug_console: the kernel's printk with timestamps,
// the agent's own log lines) and stamps every console line with the host
// time it appeared in <state>/console.log. No kabuto change is needed:
//
//   - host before QEMU: until <state>/qemu.log exists (created just before
//     QEMU is executed);
//   - QEMU's own start-up: until its sockets exist;
//   - firmware and early kernel: until the guest clock's zero, placed on the
//     host time line from the printk timestamps (arrival minus timestamp,
//     the smallest over all lines);
//   - the kernel, from the printk timestamps, to "Run /init";
//   - the agent's lines ("guest ready in D" gives the agent's start, then
//     first hello, create, network, start), QEMU's exit and kabuto's exit.

// stamped is one console line and when the host saw it, since the run began.
type stamped struct {
	at   time.Duration
	text string
}

// profileRun is what one profiled run observed.
type profileRun struct {
	lines     []stamped
	qemuSeen  time.Duration // qemu.log appeared
	sockSeen  time.Duration // QEMU's agent socket appeared
	qemuGone  time.Duration // the QEMU process exited
	end       time.Duration // kabuto exited
	exitError error
}

// watchStateDir polls dir every interval until stop is closed, recording
// when qemu.log and agent.sock appear and stamping console.log's lines. It
// keeps console.log open, so lines written just before delete removes the
// directory are still read.
// from is where to start reading console.log (its size, for a VM that is
// already running).
func watchStateDir(dir string, t0 time.Time, interval time.Duration, stop <-chan struct{}, from int64) *profileRun {
	pr := &profileRun{qemuSeen: -1, sockSeen: -1, qemuGone: -1}
	qemuPid := 0
	var f *os.File
	off := from
	var partial []byte
	read := func() {
		if f == nil {
			var err error
			if f, err = os.Open(filepath.Join(dir, "console.log")); err != nil {
				f = nil
				return
			}
		}
		if st, err := f.Stat(); err == nil && st.Size() < off {
			off, partial = 0, nil // truncated by QEMU's open
		}
		buf := make([]byte, 64<<10)
		for {
			n, err := f.ReadAt(buf, off)
			if n > 0 {
				now := time.Since(t0)
				off += int64(n)
				partial = append(partial, buf[:n]...)
				for {
					i := bytes.IndexByte(partial, '\n')
					if i < 0 {
						break
					}
					pr.lines = append(pr.lines, stamped{now, strings.TrimRight(string(partial[:i]), "\r")})
					partial = partial[i+1:]
				}
			}
			if n < len(buf) || err != nil {
				return
			}
		}
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if pr.qemuSeen < 0 && exists(filepath.Join(dir, "qemu.log")) {
			pr.qemuSeen = time.Since(t0)
		}
		if pr.sockSeen < 0 && exists(filepath.Join(dir, "agent.sock")) {
			pr.sockSeen = time.Since(t0)
		}
		if qemuPid == 0 && pr.sockSeen >= 0 {
			// Saved in the state once QEMU runs.
			_, qemuPid, _ = kabutoPids(filepath.Dir(dir), filepath.Base(dir))
		}
		if qemuPid > 0 && pr.qemuGone < 0 && !processAlive(qemuPid) {
			pr.qemuGone = time.Since(t0)
		}
		read()
		select {
		case <-stop:
			read()
			if f != nil {
				f.Close()
			}
			return pr
		case <-tick.C:
		}
	}
}

// processAlive is false once pid has exited (a zombie counts as exited).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

var (
	kernelLine = regexp.MustCompile(`^\[\s*(\d+)\.(\d{6})\] (.*)$`)
	// The agent ends each debug line with the guest clock, " [s.us]".
	agentLine = regexp.MustCompile(`^kabuto-agent: (.*?)(?: \[\d+\.\d+\])?$`)
	readyIn   = regexp.MustCompile(`^guest ready in (\S+) `)
)

// stage is one slice of the profile.
type stage struct {
	name string
	d    time.Duration
}

// profile is the analysis of one run: consecutive stages that add up to
// the whole run, and the kernel's gaps between printk lines.
type profile struct {
	stages []stage
	total  time.Duration
	gaps   []kernelGap
	kernel string // guest kernel version line
}

type kernelGap struct {
	before, after string
	d             time.Duration
}

// analyze turns one run's observations into stages. Markers that are
// missing make the analysis fail: a profile with holes would mislead.
func analyze(pr *profileRun) (*profile, error) {
	type kline struct {
		ts   time.Duration
		at   time.Duration
		text string
	}
	var kl []kline
	agent := map[string]time.Duration{}
	var agentStart time.Duration = -1
	kernelVersion := ""
	for _, l := range pr.lines {
		if m := kernelLine.FindStringSubmatch(l.text); m != nil {
			sec, _ := strconv.ParseInt(m[1], 10, 64)
			usec, _ := strconv.ParseInt(m[2], 10, 64)
			ts := time.Duration(sec)*time.Second + time.Duration(usec)*time.Microsecond
			kl = append(kl, kline{ts, l.at, m[3]})
			if strings.HasPrefix(m[3], "Linux version ") && kernelVersion == "" {
				kernelVersion = strings.Fields(m[3])[2]
			}
			continue
		}
		m := agentLine.FindStringSubmatch(l.text)
		if m == nil {
			continue
		}
		msg := m[1]
		key := ""
		switch {
		case strings.HasPrefix(msg, "guest ready in "):
			key = "ready"
			if r := readyIn.FindStringSubmatch(msg); r != nil {
				if d, err := time.ParseDuration(r[1]); err == nil {
					agentStart = l.at - d
				}
			}
		case strings.HasPrefix(msg, "first hello"):
			key = "hello"
		case msg == "request create":
			key = "create"
		case strings.Contains(msg, " ready in ") && !strings.HasPrefix(msg, "guest "):
			key = "created"
		case msg == "request network":
			key = "network"
		case msg == "request start":
			key = "start"
		}
		if _, seen := agent[key]; key != "" && !seen {
			agent[key] = l.at
		}
	}
	if len(kl) == 0 {
		return nil, fmt.Errorf("no kernel lines with timestamps on the console (printk.time=1 missing?)")
	}
	// The guest clock's zero on the host time line: a line arrives after it
	// is printed, never before, so the smallest arrival-minus-timestamp is
	// the closest estimate.
	var zero time.Duration = 1 << 62
	var runInit time.Duration = -1
	for _, k := range kl {
		if k.ts > 0 && k.at-k.ts < zero {
			zero = k.at - k.ts
		}
		if strings.HasPrefix(k.text, "Run /init as init process") {
			runInit = k.ts
		}
	}
	if runInit < 0 {
		return nil, fmt.Errorf("no \"Run /init\" kernel line")
	}
	if _, ok := agent["network"]; !ok {
		// No NIC in the VM: no network request before the start.
		agent["network"] = agent["start"]
	}
	for _, k := range []string{"ready", "hello", "create", "created", "network", "start"} {
		if _, ok := agent[k]; !ok {
			return nil, fmt.Errorf("no agent %q line on the console", k)
		}
	}
	if pr.qemuSeen < 0 || pr.sockSeen < 0 || pr.qemuGone < 0 || agentStart < 0 {
		return nil, fmt.Errorf("qemu.log, agent.sock, QEMU's exit or the agent's start not observed")
	}
	marks := []struct {
		name string
		at   time.Duration
	}{
		{"host: kabuto before QEMU starts (spec, share bind mounts, netns, tap)", pr.qemuSeen},
		{"QEMU start-up until its sockets exist", pr.sockSeen},
		{"firmware and kernel entry until the guest clock starts", zero},
		{"guest kernel boot until it runs /init", zero + runInit},
		{"agent start (Go runtime start until serve)", agentStart},
		{"agent early setup and channel found (\"guest ready\")", agent["ready"]},
		{"host: shim started, first hello answered", agent["hello"]},
		{"host: hello to create request", agent["create"]},
		{"guest: container create (late setup, 9p mount, namespaces, mounts)", agent["created"]},
		{"host: shim attaches stdio, netns scan until the network request (the start request without a NIC)", agent["network"]},
		{"guest NIC set-up, state save, start's netns rescan until the start request (none without a NIC)", agent["start"]},
		{"run /bin/true, its exit, delete until QEMU has exited", pr.qemuGone},
		{"host: rest of delete (unmounts, netns, cgroups, state) until kabuto exits", pr.end},
	}
	p := &profile{total: pr.end, kernel: kernelVersion}
	var prev time.Duration
	for _, m := range marks {
		p.stages = append(p.stages, stage{m.name, m.at - prev})
		prev = m.at
	}
	for i := 1; i < len(kl); i++ {
		if kl[i].ts > runInit {
			break
		}
		p.gaps = append(p.gaps, kernelGap{before: kl[i-1].text, after: kl[i].text, d: kl[i].ts - kl[i-1].ts})
	}
	return p, nil
}

// profileSummary is the median of each stage over several runs, and the
// kernel's largest gaps (median over the runs that have the same pair of
// lines).
type profileSummary struct {
	stages []stage
	total  time.Duration
	gaps   []kernelGap
	runs   int
	kernel string
}

func summarize(ps []*profile, topGaps int) profileSummary {
	s := profileSummary{runs: len(ps)}
	if len(ps) == 0 {
		return s
	}
	s.kernel = ps[0].kernel
	var totals durations
	for _, p := range ps {
		totals = append(totals, p.total)
	}
	s.total = totals.median()
	for i, st := range ps[0].stages {
		var ds durations
		for _, p := range ps {
			ds = append(ds, p.stages[i].d)
		}
		s.stages = append(s.stages, stage{st.name, ds.median()})
	}
	type key struct{ before, after string }
	byPair := map[key]durations{}
	shown := map[key]kernelGap{}
	var order []key
	for _, p := range ps {
		for _, g := range p.gaps {
			k := key{normalizeKernelLine(g.before), normalizeKernelLine(g.after)}
			if _, ok := byPair[k]; !ok {
				order = append(order, k)
				shown[k] = g
			}
			byPair[k] = append(byPair[k], g.d)
		}
	}
	for _, k := range order {
		if ds := byPair[k]; len(ds)*2 > len(ps) {
			s.gaps = append(s.gaps, kernelGap{shown[k].before, shown[k].after, ds.median()})
		}
	}
	sort.SliceStable(s.gaps, func(i, j int) bool { return s.gaps[i].d > s.gaps[j].d })
	if len(s.gaps) > topGaps {
		s.gaps = s.gaps[:topGaps]
	}
	return s
}

var hexOrNumber = regexp.MustCompile(`0x[0-9a-fA-F]+|\d+`)

// normalizeKernelLine drops the numbers that vary from boot to boot.
func normalizeKernelLine(s string) string {
	return hexOrNumber.ReplaceAllString(s, "#")
}

// analyzeExec splits one `kabuto exec` /bin/true into a running container
// by the agent's console lines.
func analyzeExec(pr *profileRun) ([]stage, error) {
	at := map[string]time.Duration{}
	for _, l := range pr.lines {
		m := agentLine.FindStringSubmatch(l.text)
		if m == nil {
			continue
		}
		key := ""
		switch msg := m[1]; {
		case msg == "request exec":
			key = "exec"
		case strings.HasPrefix(msg, "container-exec ") && strings.Contains(msg, " ready in "):
			key = "ready"
		case msg == "request wait":
			key = "wait"
		}
		if _, seen := at[key]; key != "" && !seen {
			at[key] = l.at
		}
	}
	for _, k := range []string{"exec", "ready", "wait"} {
		if _, ok := at[k]; !ok {
			return nil, fmt.Errorf("no agent %q line for the exec", k)
		}
	}
	marks := []struct {
		name string
		at   time.Duration
	}{
		{"host: kabuto exec until the exec request reaches the guest", at["exec"]},
		{"guest: exec set-up (fork, re-exec of the agent binary, whose C constructor enters the container and sets the process up; no Go runtime)", at["ready"]},
		{"host: exec shim attaches stdio until it waits", at["wait"]},
		{"run /bin/true, its exit, until kabuto exec exits", pr.end},
	}
	var st []stage
	var prev time.Duration
	for _, m := range marks {
		st = append(st, stage{m.name, m.at - prev})
		prev = m.at
	}
	return st, nil
}
