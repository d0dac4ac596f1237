package main

import (
	"encoding/json"
	"os"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/kabuto-runtime/kabuto/vmstate"
)

// containerState is what `state` and `list --format json` print: the OCI
// state plus runc's rootfs, created and owner.
type containerState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner"`
}

func describe(st *vmstate.State) containerState {
	status := st.Status()
	oci := st.OCI(status)
	return containerState{
		OCIVersion:  specs.Version,
		ID:          st.ID,
		Pid:         oci.Pid,
		Status:      status,
		Bundle:      st.Bundle,
		Rootfs:      st.Rootfs,
		Created:     st.Created,
		Annotations: st.Annotations,
		Owner:       st.Owner,
	}
}

var stateCommand = &cli.Command{
	Name:      "state",
	Usage:     "output the state of a container",
	ArgsUsage: "<container-id>",
	Description: `The state command outputs current state information for the instance of a
container. The status is derived from live facts: a container whose shim or
VM is gone is stopped.`,
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1); err != nil {
			return err
		}
		id, err := containerID(c)
		if err != nil {
			return err
		}
		store := vmstate.Store{Root: c.String("root")}
		st, err := store.Load(id)
		if err != nil {
			return notExist(id, err)
		}
		b, err := json.MarshalIndent(describe(st), "", "  ")
		if err != nil {
			return err
		}
		os.Stdout.Write(append(b, '\n'))
		return nil
	},
}
