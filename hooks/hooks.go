// Package hooks runs OCI hooks on the host: the container's state JSON on
// stdin, the bundle as working directory, each hook's own timeout.
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultTimeout bounds a hook without a timeout of its own.
const DefaultTimeout = 2 * time.Minute

// Run runs hooks in order and stops at the first failure.
func Run(ctx context.Context, phase string, hs []specs.Hook, state *specs.State, dir string) error {
	return run(ctx, phase, hs, state, dir, false)
}

// RunAll runs every hook, whatever the others do, and returns their
// failures joined: poststart and poststop failures are only warnings, and
// the hooks after a failed one still run.
func RunAll(ctx context.Context, phase string, hs []specs.Hook, state *specs.State, dir string) error {
	return run(ctx, phase, hs, state, dir, true)
}

func run(ctx context.Context, phase string, hs []specs.Hook, state *specs.State, dir string, keepGoing bool) error {
	if len(hs) == 0 {
		return nil
	}
	in, err := json.Marshal(state)
	if err != nil {
		return err
	}
	var errs []error
	for i, h := range hs {
		if err := runOne(ctx, h, in, dir); err != nil {
			errs = append(errs, fmt.Errorf("%s hook #%d (%s): %w", phase, i, h.Path, err))
			if !keepGoing {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// Timeout is how long hook h may run: its own timeout, which must be
// positive, or DefaultTimeout.
func Timeout(h specs.Hook) (time.Duration, error) {
	if h.Timeout == nil {
		return DefaultTimeout, nil
	}
	if *h.Timeout <= 0 {
		return 0, fmt.Errorf("timeout must be positive, not %d", *h.Timeout)
	}
	return time.Duration(*h.Timeout) * time.Second, nil
}

func runOne(ctx context.Context, h specs.Hook, state []byte, dir string) error {
	timeout, err := Timeout(h)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	} else {
		cmd.Args = []string{h.Path}
	}
	cmd.Env = h.Env
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(state)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("timed out after %v", timeout)
	}
	if err != nil {
		if msg := strings.TrimSpace(out.String()); msg != "" {
			return fmt.Errorf("%w: %s", err, strings.ReplaceAll(msg, "\n", " "))
		}
		return err
	}
	return nil
}
