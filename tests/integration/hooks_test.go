package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hostHook is a host shell hook that records its phase, in order, and the
// state it read on stdin.
func hostHook(dir, phase string, fail bool) specs.Hook {
	script := fmt.Sprintf("cat > %s/%s.json; echo %s >> %s/order", dir, phase, phase, dir)
	if fail {
		script += "; echo %s-broke >&2; exit 3"
		script = fmt.Sprintf(script, phase)
	}
	return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", script}}
}

func readOrder(t *testing.T, dir string) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, "order"))
	return strings.Join(strings.Fields(string(b)), " ")
}

func hookState(t *testing.T, dir, phase string) specs.State {
	t.Helper()
	var st specs.State
	b, err := os.ReadFile(filepath.Join(dir, phase+".json"))
	if err != nil {
		t.Fatalf("%s hook left no state: %v", phase, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s hook read %q: %v", phase, b, err)
	}
	return st
}

// Every phase runs, in the spec's order, with the OCI state on stdin; the
// startContainer hooks run in the guest, inside the container (their path
// resolves in its root and /proc there is the container's).
func TestHooksEveryPhase(t *testing.T) {
	e := newEnv(t)
	out := t.TempDir()
	b, spec := e.bundle("sh", "-c", "echo process >> /hooks/order")
	spec.Mounts = append(spec.Mounts, specsBind(out, "/hooks"))
	spec.Hooks = &specs.Hooks{
		Prestart:        []specs.Hook{hostHook(out, "prestart", false)},
		CreateRuntime:   []specs.Hook{hostHook(out, "createRuntime", false)},
		CreateContainer: []specs.Hook{hostHook(out, "createContainer", false)},
		StartContainer: []specs.Hook{
			{Path: "/bin/sh", Args: []string{"sh", "-c", "cat > /hooks/startContainer.json; echo startContainer-$(hostname) >> /hooks/order"}},
			{Path: "/bin/sh", Args: []string{"sh", "-c", "echo startContainer2 >> /hooks/order"}},
		},
		Poststart: []specs.Hook{hostHook(out, "poststart", false)},
		Poststop:  []specs.Hook{hostHook(out, "poststop", false)},
	}
	spec.Hostname = "hooked"
	writeSpec(t, b, spec)
	e.must("create", "--bundle", b, "h1")
	if got := readOrder(t, out); got != "prestart createRuntime createContainer" {
		t.Errorf("after create: %q", got)
	}
	st := hookState(t, out, "createRuntime")
	if st.ID != "h1" || st.Pid <= 0 || st.Bundle != b || st.Status != "creating" {
		t.Errorf("createRuntime state %+v", st)
	}
	e.must("start", "h1")
	e.waitStatus("h1", "stopped", 30*time.Second)
	if got := readOrder(t, out); got != "prestart createRuntime createContainer startContainer-hooked startContainer2 poststart process" &&
		got != "prestart createRuntime createContainer startContainer-hooked startContainer2 process poststart" {
		t.Errorf("after start: %q", got)
	}
	if st := hookState(t, out, "startContainer"); st.ID != "h1" || st.Pid <= 0 {
		t.Errorf("startContainer state %+v", st)
	}
	e.must("delete", "h1")
	if got := readOrder(t, out); !strings.HasSuffix(got, " poststop") {
		t.Errorf("after delete: %q", got)
	}
	if st := hookState(t, out, "poststop"); st.ID != "h1" || st.Status != "stopped" {
		t.Errorf("poststop state %+v", st)
	}
}

// A failing prestart, createRuntime or createContainer hook fails create and
// leaves nothing behind; a failing startContainer hook fails start and stops
// the container before its process runs; failing poststart and poststop
// hooks are only warnings.
func TestHookFailures(t *testing.T) {
	e := newEnv(t)
	for _, phase := range []string{"prestart", "createRuntime", "createContainer"} {
		out := t.TempDir()
		b, spec := e.bundle("true")
		// The lifecycle continues at its end: destroyed, then poststop.
		h := &specs.Hooks{Poststop: []specs.Hook{hostHook(out, "poststop", false)}}
		fail := []specs.Hook{hostHook(out, phase, true)}
		switch phase {
		case "prestart":
			h.Prestart = fail
		case "createRuntime":
			h.CreateRuntime = fail
		case "createContainer":
			h.CreateContainer = fail
		}
		spec.Hooks = h
		writeSpec(t, b, spec)
		r := e.run("", "create", "--bundle", b, "hf")
		if r.code == 0 || !strings.Contains(r.stderr, phase+" hook") || !strings.Contains(r.stderr, phase+"-broke") {
			t.Errorf("%s failure: exit %d, stderr %q", phase, r.code, r.stderr)
		}
		if r := e.run("", "state", "hf"); r.code == 0 {
			t.Errorf("%s failure left the container: %s", phase, r.stdout)
		}
		if got := readOrder(t, out); got != phase+" poststop" {
			t.Errorf("%s failure: hooks ran %q, want %q", phase, got, phase+" poststop")
		}
	}

	out := t.TempDir()
	b, spec := e.bundle("sh", "-c", "echo process >> /hooks/order")
	spec.Mounts = append(spec.Mounts, specsBind(out, "/hooks"))
	spec.Hooks = &specs.Hooks{
		StartContainer: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo startContainer >> /hooks/order; echo in-guest-broke >&2; exit 4"}}},
		Poststop:       []specs.Hook{hostHook(out, "poststop", false)},
	}
	writeSpec(t, b, spec)
	e.must("create", "--bundle", b, "hs")
	r := e.run("", "start", "hs")
	if r.code == 0 || !strings.Contains(r.stderr, "startContainer hook") || !strings.Contains(r.stderr, "in-guest-broke") {
		t.Errorf("startContainer failure: exit %d, stderr %q", r.code, r.stderr)
	}
	e.waitStatus("hs", "stopped", 30*time.Second)
	e.must("delete", "hs")
	if got := readOrder(t, out); got != "startContainer poststop" {
		t.Errorf("the process ran after a failed startContainer hook, or poststop did not: %q", got)
	}

	// A startContainer hook that is missing in the container's root fails.
	b, spec = e.bundle("true")
	spec.Hooks = &specs.Hooks{StartContainer: []specs.Hook{{Path: "/no/such/hook"}}}
	writeSpec(t, b, spec)
	e.must("create", "--bundle", b, "hm")
	if r := e.run("", "start", "hm"); r.code == 0 || !strings.Contains(r.stderr, "/no/such/hook") {
		t.Errorf("missing startContainer hook: exit %d, stderr %q", r.code, r.stderr)
	}
	e.must("delete", "--force", "hm")

	out = t.TempDir()
	b, spec = e.bundle("true")
	spec.Hooks = &specs.Hooks{
		// The hooks after a failed one still run.
		Poststart: []specs.Hook{hostHook(out, "poststart", true), hostHook(out, "poststart2", false)},
		Poststop:  []specs.Hook{hostHook(out, "poststop", true), hostHook(out, "poststop2", false)},
	}
	writeSpec(t, b, spec)
	e.must("create", "--bundle", b, "hp")
	e.must("start", "hp")
	e.waitStatus("hp", "stopped", 30*time.Second)
	e.must("delete", "hp")
	if got := readOrder(t, out); got != "poststart poststart2 poststop poststop2" {
		t.Errorf("poststart/poststop: %q", got)
	}
}

// A hook that outlives its timeout fails its phase.
func TestHookTimeout(t *testing.T) {
	e := newEnv(t)
	b, spec := e.bundle("true")
	one := 1
	spec.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/sleep", Args: []string{"sleep", "30"}, Timeout: &one}}}
	writeSpec(t, b, spec)
	start := time.Now()
	r := e.run("", "create", "--bundle", b, "ht")
	if r.code == 0 || !strings.Contains(r.stderr, "timed out") || time.Since(start) > 20*time.Second {
		t.Errorf("hook timeout: exit %d after %v, stderr %q", r.code, time.Since(start), r.stderr)
	}
}
