// Package container is the lifecycle of one container on the host: it ties
// the bundle's spec, the persisted state, the host mounts, namespace and
// cgroup, the QEMU process, the shims and the guest agent together behind
// the operations the CLI verbs call. Host only.
package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/blang/semver"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-tools/validate"

	"github.com/kabuto-runtime/kabuto/guest/seccomp"
	"github.com/kabuto-runtime/kabuto/hostns"
)

// LoadSpec reads and validates <bundle>/config.json.
func LoadSpec(bundle string) (*specs.Spec, error) {
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("JSON specification file %s not found", path)
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("config.json is malformed: %w", err)
	}
	if spec.Process != nil {
		DropUnraisableAmbient(spec.Process)
	}
	if err := ValidateSpec(&spec, bundle); err != nil {
		return nil, err
	}
	if spec.Linux != nil {
		if err := hostns.CheckPaths(spec.Linux.Namespaces); err != nil {
			return nil, fmt.Errorf("config.json: %w", err)
		}
	}
	return &spec, nil
}

// DropUnraisableAmbient removes the ambient capabilities that are not both
// permitted and inheritable: the kernel refuses to raise those. runc (1.1)
// ignores the failed raise, and `runc spec` writes such a set (ambient caps
// with no inheritable ones), so kabuto accepts the spec and drops them.
func DropUnraisableAmbient(p *specs.Process) {
	c := p.Capabilities
	if c == nil || len(c.Ambient) == 0 {
		return
	}
	in := func(set []string, name string) bool {
		for _, s := range set {
			if s == name {
				return true
			}
		}
		return false
	}
	kept := c.Ambient[:0:0]
	for _, a := range c.Ambient {
		if in(c.Permitted, a) && in(c.Inheritable, a) {
			kept = append(kept, a)
		}
	}
	c.Ambient = kept
}

// ValidateSpec checks the spec against the OCI runtime spec (runtime-tools'
// validator, without host-specific checks) plus what kabuto itself needs.
func ValidateSpec(spec *specs.Spec, bundle string) error {
	if spec.Process == nil {
		return errors.New("config.json: process is not set")
	}
	if len(spec.Process.Args) == 0 {
		return errors.New("config.json: process.args must not be empty")
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return errors.New("config.json: root.path is not set")
	}
	if spec.Linux == nil {
		return errors.New("config.json: linux section is missing (kabuto runs Linux containers only)")
	}
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range spec.Linux.Namespaces {
		switch ns.Type {
		case specs.PIDNamespace, specs.NetworkNamespace, specs.MountNamespace, specs.IPCNamespace,
			specs.UTSNamespace, specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace:
		default:
			return fmt.Errorf("config.json: unknown namespace type %q", ns.Type)
		}
		if seen[ns.Type] {
			return fmt.Errorf("config.json: namespace %q is listed twice", ns.Type)
		}
		seen[ns.Type] = true
	}
	// The guest compiles linux.seccomp in the container process; a profile
	// it would refuse fails here, before a VM starts.
	if err := seccomp.Validate(spec.Linux.Seccomp); err != nil {
		return fmt.Errorf("config.json: %w", err)
	}
	// Validate the spec as the guest sees it: a namespace given by path is
	// a host namespace (joined by the host process standing for the
	// container, see hostns); inside the VM the container gets a new one
	// (and always the guest's own network), so net.* sysctls are fine with
	// podman's pre-made namespaces and a hostname with a UTS path.
	guest, err := copySpec(spec)
	if err != nil {
		return err
	}
	for i := range guest.Linux.Namespaces {
		guest.Linux.Namespaces[i].Path = ""
	}
	// A FIFO needs no major and minor, but may carry them (runc ignores
	// them; runtime-tools refuses them).
	for i := range guest.Linux.Devices {
		if d := &guest.Linux.Devices[i]; d.Type == "p" {
			d.Major, d.Minor = 0, 0
		}
	}
	v, err := validate.NewValidator(guest, bundle, false, "linux")
	if err != nil {
		return fmt.Errorf("config.json: %w", err)
	}
	// Every check of CheckAll but four: the JSON schema one downloads the
	// schema from the network; the root one insists that root.path lies
	// inside the bundle, which docker's and podman's bundles never do (their
	// rootfs is an overlay mount elsewhere; RootfsPath checks the root); the
	// semver one accepts only the exact spec version runtime-tools was built
	// for, and every client sends another 1.x (checkVersion instead); the
	// annotations one refuses org.opencontainers.* keys, which podman sets
	// (org.opencontainers.image.stopSignal) and runc accepts.
	var errs []error
	if err := checkVersion(spec.Version); err != nil {
		errs = append(errs, err)
	}
	for _, check := range []func() error{
		v.CheckPlatform, v.CheckMandatoryFields, v.CheckMounts,
		v.CheckProcess, v.CheckLinux, v.CheckHooks,
	} {
		err := check()
		if m, ok := err.(interface{ ErrorOrNil() error }); ok {
			err = m.ErrorOrNil()
		}
		if err != nil {
			errs = append(errs, errors.New(flatten(err)))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("config.json is invalid: %s", flatten(errors.Join(errs...)))
	}
	return nil
}

// checkVersion accepts any 1.x spec version (SemVer, possibly -dev).
func checkVersion(v string) error {
	if _, err := semver.Parse(v); err != nil {
		return fmt.Errorf("ociVersion %q is not valid SemVer: %v", v, err)
	}
	if !strings.HasPrefix(v, "1.") {
		return fmt.Errorf("ociVersion %s is not supported: kabuto implements runtime spec %s", v, specs.Version)
	}
	return nil
}

// flatten turns a multierror into one line.
func flatten(err error) string {
	var parts []string
	switch m := err.(type) {
	case interface{ WrappedErrors() []error }:
		for _, e := range m.WrappedErrors() {
			parts = append(parts, flatten(e))
		}
	case interface{ Unwrap() []error }:
		for _, e := range m.Unwrap() {
			parts = append(parts, flatten(e))
		}
	}
	if len(parts) > 0 {
		return strings.Join(parts, "; ")
	}
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

// RootfsPath resolves root.path against the bundle and checks it is a directory.
func RootfsPath(spec *specs.Spec, bundle string) (string, error) {
	p := spec.Root.Path
	if !filepath.IsAbs(p) {
		p = filepath.Join(bundle, p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("rootfs (%s) does not exist", p)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("rootfs (%s) is not a directory", p)
	}
	return p, nil
}

// hasNamespace returns the spec's namespace of type t.
func hasNamespace(spec *specs.Spec, t specs.LinuxNamespaceType) (specs.LinuxNamespace, bool) {
	if spec.Linux == nil {
		return specs.LinuxNamespace{}, false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			return ns, true
		}
	}
	return specs.LinuxNamespace{}, false
}
