package main

import (
	"encoding/json"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"github.com/urfave/cli/v2"
)

// Annotation keys of `kabuto features`.
const (
	annotationPrefix     = "io.github.kabuto-runtime.kabuto."
	annotationVersion    = annotationPrefix + "version"
	annotationCommit     = annotationPrefix + "commit"
	annotationCheckpoint = annotationPrefix + "checkpoint.enabled"
	annotationHypervisor = annotationPrefix + "hypervisor"
	annotationIsolation  = annotationPrefix + "isolation"
	annotationCgroup     = annotationPrefix + "guest.cgroup"
	// runc's key, which callers that know runc look for.
	annotationRuncCheckpoint = "org.opencontainers.runc.checkpoint.enabled"
)

// Hooks kabuto runs: createContainer on the host after createRuntime,
// startContainer in the guest in the container's namespaces, the others on
// the host.
var supportedHooks = []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}

// Mount options the agent applies: guest/agent/mounts.go's mountFlags and
// propagationFlags (features_test.go keeps the two in step). Options it
// accepts but ignores (tmpcopyup, rro, rrw, idmap, ridmap) are left out.
var supportedMountOptions = []string{
	"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
	"iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime",
	"noexec", "noiversion", "nolazytime", "nomand", "norelatime", "nostrictatime",
	"nosuid", "private", "rbind", "relatime", "remount", "ro", "rprivate",
	"rshared", "rslave", "runbindable", "rw", "shared", "silent", "slave",
	"strictatime", "suid", "sync", "unbindable",
}

// Namespaces the agent creates in the guest (guest/agent/container.go's
// nsFlags). The network namespace is the VM's own, mirroring the host-side
// one the spec names.
var supportedNamespaces = []string{"cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"}

// Capabilities the agent knows (guest/agent/caps.go's capNames), in the
// kernel's order; the 6.1 guest kernel has all of them.
var supportedCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
	"CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// Seccomp as guest/seccomp compiles it: every action but SCMP_ACT_NOTIFY
// (user notification would need a listener across the VM boundary), every
// operator, and the x86 family of architectures (the guest is x86_64).
var (
	seccompActions = []string{
		"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
		"SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP",
	}
	seccompOperators = []string{
		"SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
		"SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE",
	}
	seccompArchs = []string{"SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"}
)

// kabutoFeatures is what `kabuto features` prints.
func kabutoFeatures() *features.Features {
	yes, no := true, false
	commit := gitCommit
	if commit == "" {
		commit = "unknown"
	}
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         supportedHooks,
		MountOptions:  supportedMountOptions,
		Linux: &features.Linux{
			Namespaces:   supportedNamespaces,
			Capabilities: supportedCapabilities,
			// linux.resources apply to cgroup v2 in the guest; the host
			// side (QEMU and the shims in linux.cgroupsPath) handles v1,
			// v2 and systemd's slice:prefix:name, as root only.
			Cgroup: &features.Cgroup{V1: &yes, V2: &yes, Systemd: &yes, SystemdUser: &no, Rdma: &no},
			Seccomp: &features.Seccomp{
				Enabled:   &yes,
				Actions:   seccompActions,
				Operators: seccompOperators,
				Archs:     seccompArchs,
			},
			// The guest kernel has neither LSM, nor resctrl, nor idmapped
			// mounts of the shared rootfs.
			Apparmor:        &features.Apparmor{Enabled: &no},
			Selinux:         &features.Selinux{Enabled: &no},
			IntelRdt:        &features.IntelRdt{Enabled: &no},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &no}},
		},
		Annotations: map[string]string{
			annotationVersion:        version,
			annotationCommit:         commit,
			annotationCheckpoint:     "false",
			annotationRuncCheckpoint: "false",
			annotationHypervisor:     "qemu",
			annotationIsolation:      "vm",
			annotationCgroup:         "v2",
		},
	}
}

var featuresCommand = &cli.Command{
	Name:      "features",
	Usage:     "show the enabled features",
	ArgsUsage: " ",
	Description: `Show the enabled features.
   The result is parsable as a JSON.
   See https://github.com/opencontainers/runtime-spec/blob/main/features.md for
   the semantics of the output. Annotations with the ` + annotationPrefix + `
   prefix are kabuto's own.`,
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 0); err != nil {
			return err
		}
		b, err := json.MarshalIndent(kabutoFeatures(), "", "    ")
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(append(b, '\n'))
		return err
	},
}
