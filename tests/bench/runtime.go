package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ociRuntime is one OCI runtime CLI (kabuto or runc) with its global flags.
type ociRuntime struct {
	name string
	bin  string
	root string
	args []string // global flags after --root

	mu   sync.Mutex
	live map[string]bool // containers to delete at exit
}

func newRuntime(name, bin, root string, args ...string) *ociRuntime {
	return &ociRuntime{name: name, bin: bin, root: root, args: args, live: map[string]bool{}}
}

func (r *ociRuntime) argv(verb ...string) []string {
	return append(append([]string{"--root", r.root}, r.args...), verb...)
}

// cmd runs one verb to completion and returns its stdout. Stderr is kept in
// a file, not a pipe: a detached container's shim inherits it and would hold
// a pipe open.
func (r *ociRuntime) cmd(timeout time.Duration, verb ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	errf, err := os.CreateTemp("", "bench-stderr-")
	if err != nil {
		return "", err
	}
	defer os.Remove(errf.Name())
	defer errf.Close()
	var out bytes.Buffer
	c := exec.CommandContext(ctx, r.bin, r.argv(verb...)...)
	c.Stdout, c.Stderr = &out, errf
	if len(verb) > 0 && (verb[0] == "run" || verb[0] == "create") {
		// The container's stdio: /dev/null, never a pipe we would wait on.
		c.Stdout = nil
	}
	err = c.Run()
	if err != nil {
		msg, _ := os.ReadFile(errf.Name())
		return out.String(), fmt.Errorf("%s %s: %v: %s", r.name, strings.Join(verb, " "), err, strings.TrimSpace(string(msg)))
	}
	return out.String(), nil
}

// runOnce is a foreground run of bundle as id (create, start, wait, delete).
func (r *ociRuntime) runOnce(bundle, id string) error {
	r.track(id)
	defer r.untrack(id)
	_, err := r.cmd(2*time.Minute, "run", "--bundle", bundle, id)
	return err
}

// start runs bundle detached as id.
func (r *ociRuntime) start(bundle, id string) error {
	r.track(id)
	_, err := r.cmd(2*time.Minute, "run", "--detach", "--bundle", bundle, id)
	return err
}

// exec runs args in the container and returns their stdout.
func (r *ociRuntime) exec(id string, args ...string) (string, error) {
	return r.cmd(10*time.Minute, append([]string{"exec", id}, args...)...)
}

// remove force-deletes id.
func (r *ociRuntime) remove(id string) error {
	_, err := r.cmd(time.Minute, "delete", "--force", id)
	r.untrack(id)
	return err
}

func (r *ociRuntime) track(id string) {
	r.mu.Lock()
	r.live[id] = true
	r.mu.Unlock()
}

func (r *ociRuntime) untrack(id string) {
	r.mu.Lock()
	delete(r.live, id)
	r.mu.Unlock()
}

// cleanup deletes every container this bench started and did not delete.
func (r *ociRuntime) cleanup() {
	r.mu.Lock()
	ids := make([]string, 0, len(r.live))
	for id := range r.live {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	parallel(len(ids), 4, func(i int) error { return r.remove(ids[i]) })
}

// statePid is the pid `state` reports (kabuto: the init's shim; runc: the
// container's init).
func (r *ociRuntime) statePid(id string) (int, error) {
	out, err := r.cmd(time.Minute, "state", id)
	if err != nil {
		return 0, err
	}
	var st struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return 0, err
	}
	return st.Pid, nil
}

// kabutoPids returns the shim's and QEMU's pid from kabuto's state file.
func kabutoPids(root, id string) (shim, qemu int, err error) {
	b, err := os.ReadFile(filepath.Join(root, id, "state.json"))
	if err != nil {
		return 0, 0, err
	}
	var st struct {
		Shim struct {
			Pid int `json:"pid"`
		} `json:"shim"`
		QEMU struct {
			Pid int `json:"pid"`
		} `json:"qemu"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, 0, err
	}
	if st.Shim.Pid == 0 || st.QEMU.Pid == 0 {
		return 0, 0, fmt.Errorf("state of %s has no shim or qemu pid", id)
	}
	return st.Shim.Pid, st.QEMU.Pid, nil
}

// parallel runs f(0..n-1), at most width at a time, and returns the first
// error.
func parallel(n, width int, f func(i int) error) error {
	sem := make(chan struct{}, width)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- f(i)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// interleaved warms each f up once, then times runs rounds of all of them in
// turn, so that a change in the machine's load hits every one alike.
func interleaved(runs int, fs ...func() error) ([]durations, error) {
	for _, f := range fs {
		if err := f(); err != nil {
			return nil, err
		}
	}
	out := make([]durations, len(fs))
	for i := 0; i < runs; i++ {
		for j, f := range fs {
			start := time.Now()
			if err := f(); err != nil {
				return nil, err
			}
			out[j] = append(out[j], time.Since(start))
		}
	}
	return out, nil
}
