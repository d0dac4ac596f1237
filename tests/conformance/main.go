// Command conformance runs the OCI runtime validation suite
// (github.com/opencontainers/runtime-tools v0.9.0, validation/) against
// runc and kabuto side by side, and prints one line per test.
//
// The suite's programs and its runtimetest checker are built from the Go
// module cache (this directory is its own module, pinned to the
// runtime-spec the suite was written against). Each test runs in a fresh
// working directory holding the suite's rootfs tarball and runtimetest,
// with RUNTIME naming the runtime, in its own process group, under a
// timeout; containers it leaves behind are deleted afterwards.
//
// Pass rule: the program exits 0 and prints no "not ok" TAP line, and, if
// it prints no "ok" line either (several programs report only failures,
// as a YAML diagnostic with an "error" key, and otherwise print just their
// plan), no such diagnostic. A program whose every result is a SKIP is
// "skip".
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

const suiteModule = "github.com/opencontainers/runtime-tools"

type result struct {
	Test     string        `json:"test"`
	Runtime  string        `json:"runtime"`
	Status   string        `json:"status"` // pass, fail, skip, timeout, error
	Ok       int           `json:"ok"`
	NotOk    int           `json:"notOk"`
	Skipped  int           `json:"skipped"`
	First    string        `json:"firstFailure,omitempty"`
	Duration time.Duration `json:"durationNs"`
	// diagnosed: a YAML diagnostic carried an "error" key.
	diagnosed bool
}

func main() {
	out := flag.String("out", "../../build/conformance", "build and log directory")
	runPat := flag.String("run", "", "only tests matching this regexp")
	runtimes := flag.String("runtimes", "runc=runc,kabuto=/usr/local/bin/kabuto", "name=command pairs, comma-separated")
	doc := flag.String("doc", "", "rewrite the results table of this markdown file (full runs only)")
	timeoutK := flag.Duration("timeout", 3*time.Minute, "per-test timeout for kabuto (guests boot under emulation)")
	timeoutR := flag.Duration("timeout-others", time.Minute, "per-test timeout for the other runtimes")
	flag.Parse()

	dir, err := filepath.Abs(*out)
	check(err)
	bin := filepath.Join(dir, "bin")
	check(os.MkdirAll(bin, 0o755))
	suite, err := moduleDir()
	check(err)
	tests, err := listTests(suite, *runPat)
	check(err)
	start := time.Now()
	check(build(bin, tests))
	fmt.Printf("built runtimetest and %d tests in %v\n", len(tests), time.Since(start).Round(time.Second))

	var rts [][2]string
	for _, p := range strings.Split(*runtimes, ",") {
		name, cmd, ok := strings.Cut(p, "=")
		if !ok {
			check(fmt.Errorf("bad -runtimes entry %q", p))
		}
		path, err := exec.LookPath(cmd)
		check(err)
		rts = append(rts, [2]string{name, path})
	}
	// Each runtime runs with a state root of its own (through a wrapper the
	// tests call as RUNTIME), so that cleaning up after a test can never
	// touch anybody else's containers.
	// The roots are in /run and traversable: a container in a user
	// namespace (runc's init runs in it) must reach its state directory.
	roots, err := os.MkdirTemp("/run", "kabuto-conformance-")
	check(err)
	check(os.Chmod(roots, 0o711))
	defer os.RemoveAll(roots)
	for i, rt := range rts {
		root := filepath.Join(roots, rt[0])
		check(os.Mkdir(root, 0o711))
		wrapper := filepath.Join(bin, rt[0])
		script := fmt.Sprintf("#!/bin/sh\nexec %q --root %q \"$@\"\n", rt[1], root)
		check(os.WriteFile(wrapper, []byte(script), 0o755))
		rts[i][1] = wrapper
	}

	// Bundles live outside the checkout (they hold whole root filesystems,
	// and runtimes mount into them).
	workRoot, err := os.MkdirTemp("", "kabuto-conformance-")
	check(err)
	check(os.Chmod(workRoot, 0o711)) // user-namespace containers traverse it
	defer os.RemoveAll(workRoot)
	var all []result
	byTest := map[string]map[string]result{}
	took := map[string]time.Duration{}
	for _, rt := range rts {
		t0 := time.Now()
		for _, test := range tests {
			timeout := *timeoutR
			if rt[0] == "kabuto" {
				timeout = *timeoutK
			}
			r := runOne(dir, workRoot, bin, suite, test, rt[0], rt[1], timeout)
			all = append(all, r)
			if byTest[test] == nil {
				byTest[test] = map[string]result{}
			}
			byTest[test][rt[0]] = r
			fmt.Fprintf(os.Stderr, "  %-8s %-36s %-7s %v\n", rt[0], test, r.Status, r.Duration.Round(100*time.Millisecond))
		}
		took[rt[0]] = time.Since(t0)
	}

	// The table: one line per test, every runtime side by side.
	fmt.Printf("\n%-36s", "test")
	for _, rt := range rts {
		fmt.Printf(" %-8s", rt[0])
	}
	fmt.Println(" first failure of the last runtime that failed")
	for _, test := range tests {
		fmt.Printf("%-36s", test)
		first := ""
		for _, rt := range rts {
			r := byTest[test][rt[0]]
			fmt.Printf(" %-8s", r.Status)
			if r.First != "" {
				first = r.First
			}
		}
		if len(first) > 90 {
			first = first[:90] + "…"
		}
		fmt.Printf(" %s\n", first)
	}
	fmt.Println()
	for _, rt := range rts {
		n := map[string]int{}
		for _, test := range tests {
			n[byTest[test][rt[0]].Status]++
		}
		fmt.Printf("%s: %d tests in %v, %d skipped, %d timed out\n", rt[0], len(tests), took[rt[0]].Round(time.Second), n["skip"], n["timeout"])
	}
	for _, rt := range rts {
		n := 0
		for _, test := range tests {
			if byTest[test][rt[0]].Status == "pass" {
				n++
			}
		}
		fmt.Printf("%s: %d passed, %d failed\n", rt[0], n, len(tests)-n)
	}
	b, _ := json.MarshalIndent(all, "", " ")
	check(os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644))
	if *doc != "" && *runPat == "" {
		check(writeDoc(*doc, tests, rts, byTest, took))
	}
}

// writeDoc replaces the results section of the conformance document (between
// its markers) with this run's table.
func writeDoc(path string, tests []string, rts [][2]string, byTest map[string]map[string]result, took map[string]time.Duration) error {
	const begin, end = "<!-- results: written by make validation -->", "<!-- /results -->"
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i, j := bytes.Index(old, []byte(begin)), bytes.Index(old, []byte(end))
	if i < 0 || j < i {
		return fmt.Errorf("%s lacks the results markers", path)
	}
	var t strings.Builder
	fmt.Fprintf(&t, "%s\n\n| test |", begin)
	for _, rt := range rts {
		fmt.Fprintf(&t, " %s |", rt[0])
	}
	t.WriteString("\n|---|")
	for range rts {
		t.WriteString("---|")
	}
	t.WriteString("\n")
	passed := map[string]int{}
	for _, test := range tests {
		fmt.Fprintf(&t, "| %s |", test)
		for _, rt := range rts {
			st := byTest[test][rt[0]].Status
			if st == "pass" {
				passed[rt[0]]++
			}
			fmt.Fprintf(&t, " %s |", st)
		}
		t.WriteString("\n")
	}
	t.WriteString("| **passed** |")
	for _, rt := range rts {
		fmt.Fprintf(&t, " **%d** of %d |", passed[rt[0]], len(tests))
	}
	t.WriteString("\n\nTime for the whole suite:")
	for k, rt := range rts {
		if k > 0 {
			t.WriteString(",")
		}
		fmt.Fprintf(&t, " %s %v", rt[0], took[rt[0]].Round(time.Second))
	}
	fmt.Fprintf(&t, " (%s, %d CPUs).\n\n", time.Now().UTC().Format("2006-01-02"), runtime.NumCPU())
	out := append(append(append([]byte{}, old[:i]...), t.String()...), old[j:]...)
	return os.WriteFile(path, out, 0o644)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(2)
	}
}

// moduleDir is the suite's source in the module cache.
func moduleDir() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", suiteModule).Output()
	if err != nil {
		return "", fmt.Errorf("find %s in the module cache (go mod download): %w", suiteModule, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func listTests(suite, pat string) ([]string, error) {
	re, err := regexp.Compile(pat)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(suite, "validation"))
	if err != nil {
		return nil, err
	}
	var tests []string
	for _, e := range ents {
		if e.IsDir() && e.Name() != "util" && re.MatchString(e.Name()) {
			tests = append(tests, e.Name())
		}
	}
	sort.Strings(tests)
	if len(tests) == 0 {
		return nil, fmt.Errorf("no test matches %q", pat)
	}
	return tests, nil
}

// checkerToolchain builds runtimetest. Since Go 1.19 every Go program
// raises its own soft RLIMIT_NOFILE to the hard limit when it starts, so a
// runtimetest built with a newer Go measures its own change, not the
// container's rlimit (process_rlimits fails for every runtime). The suite
// dates from Go 1.1x; the Go module proxy serves that toolchain.
var checkerToolchain = envOr("CONFORMANCE_CHECKER_GO", "go1.18.10")

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// build compiles runtimetest (static: it runs inside the containers) and
// the test programs, all in one go invocation per kind.
func build(bin string, tests []string) error {
	cmd := exec.Command("go", "build", "-o", filepath.Join(bin, "runtimetest"), suiteModule+"/cmd/runtimetest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN="+checkerToolchain)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build runtimetest: %w", err)
	}
	args := []string{"build", "-o", bin + "/"}
	for _, t := range tests {
		args = append(args, suiteModule+"/validation/"+t)
	}
	cmd = exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build the tests: %w", err)
	}
	return nil
}

func runOne(dir, workRoot, bin, suite, test, name, command string, timeout time.Duration) result {
	r := result{Test: test, Runtime: name}
	work := filepath.Join(workRoot, name, test)
	cleanWork(work)
	logs := filepath.Join(dir, "logs", name)
	if err := os.MkdirAll(work, 0o755); err != nil {
		r.Status, r.First = "error", err.Error()
		return r
	}
	os.MkdirAll(logs, 0o755)
	for _, f := range [][2]string{
		{filepath.Join(bin, "runtimetest"), "runtimetest"},
		{filepath.Join(suite, "rootfs-"+runtime.GOARCH+".tar.gz"), "rootfs-" + runtime.GOARCH + ".tar.gz"},
	} {
		if err := copyFile(f[0], filepath.Join(work, f[1])); err != nil {
			r.Status, r.First = "error", err.Error()
			return r
		}
	}
	before := containers(command)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, test))
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "RUNTIME="+command, "TMPDIR="+work)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var buf, ebuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &ebuf
	t0 := time.Now()
	err := cmd.Run()
	r.Duration = time.Since(t0)
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// Containers the test left behind.
	for _, id := range containers(command) {
		if !slices.Contains(before, id) {
			exec.Command(command, "delete", "--force", id).Run()
		}
	}
	os.WriteFile(filepath.Join(logs, test+".tap"), buf.Bytes(), 0o644)
	os.WriteFile(filepath.Join(logs, test+".stderr"), ebuf.Bytes(), 0o644)
	out := buf.String()
	parseTAP(&buf, &r)
	switch {
	case ctx.Err() != nil:
		r.Status = "timeout"
		if r.First == "" {
			r.First = fmt.Sprintf("timed out after %v", timeout)
		}
	case err == nil && r.NotOk == 0 && r.Ok == 0 && r.Skipped > 0:
		r.Status = "skip"
	case err == nil && r.NotOk == 0 && (r.Ok > 0 || !r.diagnosed):
		r.Status = "pass"
	default:
		r.Status = "fail"
		if r.First == "" {
			r.First = lastLine(out + "\n" + ebuf.String())
			if err != nil && r.First == "" {
				r.First = err.Error()
			}
		}
	}
	cleanWork(work)
	return r
}

// cleanWork removes a test's working directory, unmounting first whatever a
// runtime left mounted below it (a container without a mount namespace of
// its own mounts its /proc on the host).
func cleanWork(work string) {
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var points []string
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], work+"/") {
				points = append(points, f[4])
			}
		}
		sort.Sort(sort.Reverse(sort.StringSlice(points)))
		for _, p := range points {
			syscall.Unmount(p, syscall.MNT_DETACH)
		}
	}
	os.RemoveAll(work)
}

var tapLine = regexp.MustCompile(`^(not ok|ok)\b\s*\d*\s*-?\s*(.*)$`)

func parseTAP(rd io.Reader, r *result) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "1..0") && strings.Contains(line, "# SKIP") {
			r.Skipped++
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), `"error":`) {
			r.diagnosed = true
			if r.First == "" && r.Ok == 0 {
				r.First = strings.Trim(strings.TrimPrefix(strings.TrimSpace(line), `"error":`), ` ",`)
			}
		}
		m := tapLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		switch {
		case strings.Contains(line, "# SKIP"):
			r.Skipped++
		case m[1] == "ok":
			r.Ok++
		default:
			r.NotOk++
			if r.First == "" {
				r.First = m[2]
			}
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// containers lists the ids the runtime knows (in its default root).
func containers(command string) []string {
	out, err := exec.Command(command, "list", "-q").Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
