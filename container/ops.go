package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/agentclient"
	"github.com/kabuto-runtime/kabuto/hooks"
	"github.com/kabuto-runtime/kabuto/hostcgroup"
	"github.com/kabuto-runtime/kabuto/netns"
	"github.com/kabuto-runtime/kabuto/protocol"
	"github.com/kabuto-runtime/kabuto/qemu"
	"github.com/kabuto-runtime/kabuto/vmstate"
)

// Start lets the created container's init run.
func (r *Runtime) Start(ctx context.Context, id string) error {
	h, err := r.Store.Lock(id)
	if err != nil {
		return err
	}
	defer h.Unlock()
	st, err := h.Load()
	if err != nil {
		return err
	}
	switch status := st.Status(); status {
	case vmstate.Created:
	case vmstate.Stopped:
		return errors.New("cannot start a container that has stopped")
	case vmstate.Running:
		return errors.New("cannot start an already running container")
	default:
		return fmt.Errorf("cannot start a container in the %s state", status)
	}
	// Newer docker moves the veth in after create: pick it up now.
	if err := r.connectNetwork(ctx, h.Dir, st, true); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, r.Config.RequestTimeout())
	defer cancel()
	var req protocol.StartRequest
	if st.Hooks != nil && len(st.Hooks.StartContainer) > 0 {
		// The guest runs them, with the state only the host knows.
		if req.State, err = json.Marshal(st.OCI(vmstate.Created)); err != nil {
			return err
		}
	}
	if err := agentclient.ForStateDir(h.Dir).Call(cctx, protocol.MethodStart, &req, nil); err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	st.Started = true
	if err := h.Save(st); err != nil {
		return err
	}
	if st.Hooks != nil {
		if err := hooks.RunAll(ctx, "poststart", st.Hooks.Poststart, st.OCI(vmstate.Running), st.Bundle); err != nil {
			r.warn("%v", err)
		}
	}
	return nil
}

// Kill sends sig to the container's init, or with all to all its processes.
func (r *Runtime) Kill(ctx context.Context, id string, sig unix.Signal, all bool) error {
	st, err := r.Store.Load(id)
	if err != nil {
		return err
	}
	status := st.Status()
	if status == vmstate.Stopped {
		// runc's kill --all of a stopped container whose cgroup is gone
		// succeeds: nothing is left to signal. Here the guest channel is
		// gone with the init's shim; whatever still runs in the VM ends
		// with it at delete.
		if all {
			return nil
		}
		return ErrNotRunning
	}
	dir := r.Store.Dir(id)
	if status == vmstate.Paused {
		// A stopped VM answers nothing: let it run for the delivery.
		if err := vmCommand(dir, "cont"); err != nil {
			return err
		}
		defer func() {
			if sig != unix.SIGKILL {
				vmCommand(dir, "stop")
			}
		}()
	}
	cctx, cancel := context.WithTimeout(ctx, r.Config.RequestTimeout())
	defer cancel()
	if err := agentclient.ForStateDir(dir).Signal(cctx, protocol.InitProcess, int(sig), all); err != nil {
		if errors.Is(err, agentclient.ErrNoHub) {
			return ErrNotRunning
		}
		return err
	}
	return nil
}

// Pause stops the VM's vCPUs (the whole container freezes at once).
func (r *Runtime) Pause(ctx context.Context, id string) error {
	return r.setPaused(id, true)
}

// Resume lets a paused VM run again.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	return r.setPaused(id, false)
}

func (r *Runtime) setPaused(id string, pause bool) error {
	h, err := r.Store.Lock(id)
	if err != nil {
		return err
	}
	defer h.Unlock()
	st, err := h.Load()
	if err != nil {
		return err
	}
	status := st.Status()
	switch {
	case pause && status == vmstate.Paused:
		return ErrPaused
	case pause && status != vmstate.Running:
		return ErrNotRunning
	case !pause && status != vmstate.Paused:
		return ErrNotPaused
	}
	cmd := "cont"
	if pause {
		cmd = "stop"
		if st.RootfsCache != "" {
			// The guest holds the rootfs's recent writes: write them back
			// first, so that what reads the rootfs of a paused container
			// (docker commit, docker cp) sees them.
			if err := r.syncGuest(h.Dir); err != nil {
				r.warn("pause %s: write back the rootfs: %v", id, err)
			}
		}
	}
	if err := vmCommand(h.Dir, cmd); err != nil {
		return err
	}
	st.Paused = pause
	return h.Save(st)
}

// syncGuest has the agent write the guest's dirty pages back to the host.
func (r *Runtime) syncGuest(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.Config.RequestTimeout())
	defer cancel()
	return agentclient.ForStateDir(dir).Call(ctx, protocol.MethodSync, nil, nil)
}

// vmCommand runs one argument-less QMP command.
func vmCommand(dir, cmd string) error {
	mon, err := qemu.Connect(dir, 5*time.Second)
	if err != nil {
		return err
	}
	defer mon.Close()
	_, err = mon.Execute(cmd, nil)
	return err
}

// Delete removes a stopped or created container (any container, with
// force) and everything kabuto made for it.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	h, err := r.Store.Lock(id)
	if err != nil {
		if force && errors.Is(err, vmstate.ErrNotExist) {
			return nil
		}
		return err
	}
	defer h.Unlock()
	st, err := h.Load()
	if err != nil {
		return err
	}
	// The runtime spec: deleting a container that is not stopped (created
	// included) has no effect and is an error. runc deletes a created one;
	// its clients do not depend on it, since docker, containerd, podman
	// and CRI-O all follow a failed or normal delete with delete --force.
	if status := st.Status(); status != vmstate.Stopped && !force {
		return fmt.Errorf("cannot delete container %s that is not stopped: %s", id, status)
	}
	r.teardown(ctx, h.Dir, st)
	if st.Hooks != nil && !st.Creating {
		if err := hooks.RunAll(ctx, "poststop", st.Hooks.Poststop, st.OCI(vmstate.Stopped), st.Bundle); err != nil {
			r.warn("%v", err)
		}
	}
	return h.Remove()
}

// teardown stops every process of the container and undoes every host
// change recorded in st. It is best effort: it goes on past errors.
func (r *Runtime) teardown(ctx context.Context, dir string, st *vmstate.State) {
	if st.Shim.Alive() && st.QEMU.Alive() {
		// Kill the workload first so the shims report 137, like runc.
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if st.Paused {
			vmCommand(dir, "cont")
		}
		agentclient.ForStateDir(dir).Signal(cctx, protocol.InitProcess, int(unix.SIGKILL), true)
		cancel()
		// The agent writes the rootfs back when the init exits, before the
		// shim hears of the exit: with a write-back rootfs, give that the
		// time it takes before QEMU is stopped.
		wait := 2 * time.Second
		if st.RootfsCache != "" {
			wait = r.Config.RequestTimeout()
		}
		st.Shim.WaitGone(wait)
	}
	stopQEMU(dir, st.QEMU)
	for _, p := range append([]vmstate.Process{st.Shim}, st.ExecShims()...) {
		if p.Alive() {
			unix.Kill(p.Pid, unix.SIGKILL)
			p.WaitGone(2 * time.Second)
		}
	}
	for i := len(st.Mounts) - 1; i >= 0; i-- {
		if err := unmount(st.Mounts[i]); err != nil {
			r.warn("%v", err)
		}
	}
	if st.OwnNetNS && st.NetNS != "" {
		if err := netns.Remove(st.NetNS); err != nil {
			r.warn("%v", err)
		}
	}
	if err := hostcgroup.Remove(st.Cgroups); err != nil {
		r.warn("remove cgroups: %v", err)
	}
}

// ErrStatsPaused: a paused container's VM has its vCPUs stopped, so its
// agent cannot read the cgroup.
var ErrStatsPaused = errors.New("cannot read the statistics of a paused container: its VM's vCPUs are stopped")

// Stats reads the container's cgroup statistics in its guest.
func (r *Runtime) Stats(ctx context.Context, id string) (*protocol.StatsResponse, error) {
	st, err := r.Store.Load(id)
	if err != nil {
		return nil, err
	}
	switch st.Status() {
	case vmstate.Stopped:
		return nil, fmt.Errorf("container with id %s is not running", id)
	case vmstate.Paused:
		return nil, ErrStatsPaused
	}
	var s protocol.StatsResponse
	cctx, cancel := context.WithTimeout(ctx, r.Config.RequestTimeout())
	defer cancel()
	if err := agentclient.ForStateDir(r.Store.Dir(id)).Call(cctx, protocol.MethodStats, nil, &s); err != nil {
		return nil, err
	}
	if s.Hugetlb == nil {
		s.Hugetlb = map[string]protocol.HugetlbStats{}
	}
	return &s, nil
}

// Event is one event of `kabuto events`, runc's types.Event.
type Event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data any    `json:"data,omitempty"`
}

// Events reports the container's statistics every interval and its OOM
// kills as they happen, until the container's init exits (nil), ctx ends,
// or the VM goes away. Statistics that cannot be read (a paused VM) are
// skipped, as runc logs and skips them.
func (r *Runtime) Events(ctx context.Context, id string, interval time.Duration, emit func(Event) error) error {
	if interval <= 0 {
		return errors.New("duration interval must be greater than 0")
	}
	st, err := r.Store.Load(id)
	if err != nil {
		return err
	}
	if st.Status() == vmstate.Stopped {
		return fmt.Errorf("container with id %s is not running", id)
	}
	dir := r.Store.Dir(id)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The event stream: opened in the background, since a paused VM
	// answers only once resumed.
	type result struct {
		ev  *protocol.Event
		err error
	}
	frames := make(chan result, 1)
	go func() {
		send := func(f result) bool {
			select {
			case frames <- f:
				return true
			case <-ctx.Done():
				return false
			}
		}
		conn, err := agentclient.ForStateDir(dir).Stream(ctx, protocol.MethodEvents, nil)
		if err != nil {
			send(result{err: err})
			return
		}
		defer conn.Close()
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		defer stop()
		for {
			var ev protocol.Event
			if err := protocol.ReadFrame(conn, &ev); err != nil {
				send(result{err: err})
				return
			}
			if !send(result{ev: &ev}) || ev.Type == protocol.EventExit {
				return
			}
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case f := <-frames:
			if f.err != nil {
				// The shim (and with it the channel) is gone once the
				// container has stopped: that is the end, not a failure.
				if st, lerr := r.Store.Load(id); lerr == nil && st.Status() == vmstate.Stopped || vmstate.IsNotExist(lerr) {
					return nil
				}
				return fmt.Errorf("events of container %s: %w", id, f.err)
			}
			switch f.ev.Type {
			case protocol.EventOOM:
				if err := emit(Event{Type: "oom", ID: id}); err != nil {
					return err
				}
			case protocol.EventExit:
				return nil
			}
		case <-tick.C:
			s, err := r.Stats(ctx, id)
			if err != nil {
				r.warn("events: %v", err)
				continue
			}
			if err := emit(Event{Type: "stats", ID: id, Data: s}); err != nil {
				return err
			}
		}
	}
}
