package integration

// VM templating (docs/templating.md): factory.enable_template restores each
// container's VM from a snapshot of a booted template VM.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// templateEnv is an env with templating on and a template path of its own,
// whose templates are destroyed (and checked gone) when the test ends.
func templateEnv(t *testing.T, hypervisorConfig ...string) (*env, string) {
	t.Helper()
	tp := filepath.Join(t.TempDir(), "templates")
	extra := append(hypervisorConfig, fmt.Sprintf("\n[factory]\nenable_template = true\ntemplate_path = %q", tp))
	e := newEnv(t, extra...)
	t.Cleanup(func() {
		if r := e.run("", "template", "destroy"); r.code != 0 {
			t.Errorf("template destroy: exit %d: %s", r.code, r.stderr)
		}
		checkTemplatesGone(t, tp)
	})
	return e, tp
}

// checkTemplatesGone asserts that nothing of the templates under tp is left:
// files, mounts, QEMU processes.
func checkTemplatesGone(t *testing.T, tp string) {
	t.Helper()
	if _, err := os.Stat(tp); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(tp)
		for _, e := range ents {
			t.Errorf("template file left: %s", filepath.Join(tp, e.Name()))
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, tp) {
			t.Errorf("template mount left: %s", l)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), tp) {
			t.Errorf("template process left: %s", strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

type templateInfo struct {
	Key      string `json:"key"`
	Dir      string `json:"dir"`
	Complete bool   `json:"complete"`
	Stale    bool   `json:"stale"`
	Meta     *struct {
		Created   time.Time `json:"created"`
		NICs      int       `json:"nics"`
		MemoryMiB int       `json:"memoryMiB"`
	} `json:"meta"`
}

func (e *env) templates() []templateInfo {
	e.t.Helper()
	var ts []templateInfo
	out := e.must("template", "status", "--format", "json")
	if err := json.Unmarshal([]byte(out), &ts); err != nil {
		e.t.Fatalf("template status: %v: %s", err, out)
	}
	return ts
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// qemuOf returns the command line of the QEMU of container id, "" if none.
func qemuOf(id string) (pid int, cmdline string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "\x00-name\x00kabuto-"+id+"\x00") {
			continue
		}
		pid, _ = strconv.Atoi(filepath.Base(filepath.Dir(p)))
		return pid, strings.ReplaceAll(string(b), "\x00", " ")
	}
	return 0, ""
}

// nicBundle is a bundle whose VM has a NIC under `run`: a create-time hook
// (a no-op) could move an interface into its new network namespace.
func nicBundle(e *env, args ...string) string {
	b, spec := e.bundle(args...)
	spec.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/true"}}}
	writeSpec(e.t, b, spec)
	return b
}

func TestTemplateRun(t *testing.T) {
	// debug_console: the agent logs what it does on restore.
	e, _ := templateEnv(t, "debug_console = true")
	// The first create makes the template, then starts from it.
	b := nicBundle(e, "sh", "-c", "echo from-clone; exit 7")
	r := e.run("", "run", "--bundle", b, "first")
	if r.code != 7 || r.stdout != "from-clone\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	ts := e.templates()
	if len(ts) != 1 || !ts[0].Complete || ts[0].Stale || ts[0].Meta == nil || ts[0].Meta.NICs != 1 || ts[0].Meta.MemoryMiB != 128 {
		t.Fatalf("templates after the first run: %+v", ts)
	}
	memory := filepath.Join(ts[0].Dir, "memory")
	sum := fileSHA(t, memory)
	// A clone's clock would lag by the template's age were it not set.
	if age := time.Since(ts[0].Meta.Created); age < 5*time.Second {
		time.Sleep(5*time.Second - age)
	}

	// Two clones at once, both restored (not booted) from the same memory.
	// The random bytes are read first thing: the guest kernel would reseed
	// its RNG by itself within a second or so, but not before.
	b2 := nicBundle(e, "sh", "-c", "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; sleep 3; date +%s")
	type out struct {
		stdout, stderr string
		err            error
	}
	// What is seen of a clone while it runs.
	type seen struct {
		cmd              string
		mapped, reseeded bool
	}
	results := make([]chan out, 2)
	watches := make([]chan seen, 2)
	for i := range results {
		results[i] = make(chan out, 1)
		watches[i] = make(chan seen, 1)
		id := fmt.Sprintf("pair%d", i)
		c := e.cmd("run", "--bundle", b2, id)
		so, err1 := os.Create(filepath.Join(e.dir, id+".out"))
		se, err2 := os.Create(filepath.Join(e.dir, id+".err"))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		c.Stdout, c.Stderr = so, se
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func(ch chan out) {
			err := c.Wait()
			close(done)
			so.Close()
			se.Close()
			o, _ := os.ReadFile(so.Name())
			ee, _ := os.ReadFile(se.Name())
			ch <- out{string(o), string(ee), err}
		}(results[i])
		go func(ch chan seen) {
			var s seen
			console := filepath.Join(e.root, id, "console.log")
			for {
				if pid, cmd := qemuOf(id); pid != 0 {
					s.cmd = cmd
					// The template's memory is mapped (pages shared until
					// written).
					maps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
					s.mapped = s.mapped || strings.Contains(string(maps), memory)
				}
				// The restored agent reseeded the guest kernel's RNG and
				// set the clock before the container was created.
				b, _ := os.ReadFile(console)
				s.reseeded = s.reseeded || strings.Contains(string(b), "kernel RNG reseeded with 64 bytes from the host") && strings.Contains(string(b), "clock set to")
				select {
				case <-done:
					ch <- s
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}(watches[i])
	}
	for i, ch := range watches {
		s := <-ch
		if !strings.Contains(s.cmd, "-incoming defer") || !strings.Contains(s.cmd, "mem-path="+memory+",share=off") {
			t.Errorf("pair%d's QEMU was not restored from the template: %q", i, s.cmd)
		}
		if !s.mapped {
			t.Errorf("pair%d's QEMU did not map %s", i, memory)
		}
		if !s.reseeded {
			t.Errorf("pair%d: no reseed or clock logged on the console", i)
		}
	}
	var randoms []string
	for i, ch := range results {
		o := <-ch
		if o.err != nil {
			t.Fatalf("pair%d: %v: %s", i, o.err, o.stderr)
		}
		lines := strings.Fields(o.stdout)
		if len(lines) != 2 || len(lines[0]) != 64 {
			t.Fatalf("pair%d printed %q", i, o.stdout)
		}
		guest, err := strconv.ParseInt(lines[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Now().Unix() - guest; d < -2 || d > 3 {
			t.Errorf("pair%d: guest clock %d, host %d: off by %d s", i, guest, time.Now().Unix(), d)
		}
		randoms = append(randoms, lines[0])
	}
	if randoms[0] == randoms[1] {
		t.Errorf("two clones read the same random bytes: %s", randoms[0])
	}
	if got := fileSHA(t, memory); got != sum {
		t.Errorf("the template's memory changed while clones ran")
	}
	if ts := e.templates(); len(ts) != 1 {
		t.Errorf("one template expected, have %+v", ts)
	}
}

func TestTemplateInvalidation(t *testing.T) {
	dir := t.TempDir()
	myInitrd := filepath.Join(dir, "initrd.img")
	data, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(myInitrd, data, 0o644); err != nil {
		t.Fatal(err)
	}
	e, tp := templateEnv(t)
	conf, _ := os.ReadFile(e.config)
	base := strings.Replace(string(conf), initrd, myInitrd, 1)
	os.WriteFile(e.config, []byte(base), 0o644)
	b, _ := e.bundle("true")
	run := func(id string) {
		t.Helper()
		if r := e.run("", "run", "--bundle", b, id); r.code != 0 {
			t.Fatalf("run %s: exit %d: %s", id, r.code, r.stderr)
		}
	}
	keys := func() map[string]bool {
		m := map[string]bool{}
		for _, x := range e.templates() {
			if !x.Complete {
				t.Errorf("incomplete template %+v", x)
			}
			m[x.Key] = x.Stale
		}
		return m
	}

	run("a")
	first := keys()
	if len(first) != 1 {
		t.Fatalf("templates: %v", first)
	}
	run("a2")
	if k := keys(); len(k) != 1 {
		t.Fatalf("the same configuration made another template: %v", k)
	}

	// A configuration that changes the guest needs its own template; the
	// first stays valid (another configuration may use it).
	withParams := strings.Replace(base, "[hypervisor]\n", "[hypervisor]\nkernel_params = \"kabuto.test=1\"\n", 1)
	os.WriteFile(e.config, []byte(withParams), 0o644)
	run("b")
	second := keys()
	if len(second) != 2 {
		t.Fatalf("templates after changing kernel_params: %v", second)
	}
	for k, stale := range second {
		if stale {
			t.Errorf("template %s stale", k)
		}
	}

	// A new initrd makes both stale; the next template made removes them.
	future := time.Now().Add(time.Minute)
	os.Chtimes(myInitrd, future, future)
	for k, stale := range keys() {
		if !stale {
			t.Errorf("template %s not stale after the initrd changed", k)
		}
	}
	run("c")
	third := keys()
	if len(third) != 1 {
		t.Fatalf("stale templates not removed: %v", third)
	}
	for k := range third {
		if second[k] {
			t.Errorf("template %s is an old one", k)
		}
	}

	// The hidden verb makes templates of other NIC counts.
	out := strings.TrimSpace(e.must("template", "create", "--nics", "0"))
	found := false
	for _, x := range e.templates() {
		if x.Key == out && x.Meta != nil && x.Meta.NICs == 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("template create printed %q, not a 0-NIC template: %+v", out, e.templates())
	}

	// Destroy removes everything (checked again at cleanup).
	e.must("template", "destroy")
	checkTemplatesGone(t, tp)
}

// TestTemplateFallback: when no template can be made, containers boot.
func TestTemplateFallback(t *testing.T) {
	e := newEnv(t, "\n[factory]\nenable_template = true\ntemplate_path = \"/proc/kabuto-no-templates\"")
	b, _ := e.bundle("echo", "booted")
	log := filepath.Join(e.dir, "log.json")
	e.ids["fallback"] = true
	c := e.cmd("--log", log, "--log-format", "json", "run", "--bundle", b, "fallback")
	out, err := c.Output()
	if err != nil || string(out) != "booted\n" {
		t.Fatalf("run: %v, %q", err, out)
	}
	lb, _ := os.ReadFile(log)
	if !strings.Contains(string(lb), "VM templating") || !strings.Contains(string(lb), "booting the VM instead") {
		t.Errorf("no warning logged: %s", lb)
	}
}
