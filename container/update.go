package container

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kabuto-runtime/kabuto/agentclient"
	"github.com/kabuto-runtime/kabuto/hostcgroup"
	"github.com/kabuto-runtime/kabuto/protocol"
	"github.com/kabuto-runtime/kabuto/vmstate"
)

// Update applies new resource limits to the container's cgroup in the guest.
// Zero fields leave a setting as it is (docker sends the whole structure).
// The VM itself cannot grow: the microvm machine has no memory or CPU
// hotplug, so a memory limit beyond the guest's RAM is refused.
func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	st, err := r.Store.Load(id)
	if err != nil {
		return err
	}
	switch st.Status() {
	case vmstate.Stopped:
		return ErrNotRunning
	case vmstate.Paused:
		return ErrPaused
	}
	if m := res.Memory; m != nil && m.Limit != nil && *m.Limit > 0 && st.MemoryMiB > 0 {
		if avail := int64(st.MemoryMiB-GuestOverheadMiB) << 20; *m.Limit > avail {
			return fmt.Errorf("cannot raise the memory limit to %d MiB: the container's VM has %d MiB of RAM (%d MiB usable) and this machine type has no memory hotplug; recreate the container with the new limit",
				*m.Limit>>20, st.MemoryMiB, avail>>20)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, r.Config.RequestTimeout())
	defer cancel()
	if err := agentclient.ForStateDir(r.Store.Dir(id)).Call(cctx, protocol.MethodUpdate, protocol.UpdateRequest{Resources: res}, nil); err != nil {
		return err
	}
	// What bounds the VM as a whole goes to its host cgroup too.
	if st.CgroupPath == "" {
		return nil
	}
	mounts, err := hostcgroup.Mounts()
	if err != nil {
		return fmt.Errorf("list cgroup mounts: %w", err)
	}
	return hostcgroup.Apply(mounts, st.CgroupPath, res)
}
