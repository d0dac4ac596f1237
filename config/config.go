// Package config loads kabuto's host-side configuration: the TOML file at
// /etc/kabuto/configuration.toml (or --config / KABUTO_CONFIG), laid over
// built-in defaults. It runs on the host only.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where kabuto looks when neither --config nor KABUTO_CONFIG is set.
const DefaultPath = "/etc/kabuto/configuration.toml"

// EnvVar overrides DefaultPath.
const EnvVar = "KABUTO_CONFIG"

// Config is the whole effective configuration.
type Config struct {
	Hypervisor Hypervisor `toml:"hypervisor" json:"hypervisor"`
	Agent      Agent      `toml:"agent" json:"agent"`
	Factory    Factory    `toml:"factory" json:"factory"`
	// Path is the file the configuration came from ("" for built-in defaults).
	Path string `toml:"-" json:"path"`
}

// Hypervisor describes the QEMU each container gets.
type Hypervisor struct {
	// Path of the QEMU binary; a bare name is looked up in $PATH.
	Path string `toml:"path" json:"path"`
	// Kernel is an uncompressed vmlinux (PVH entry) or a bzImage.
	Kernel string `toml:"kernel" json:"kernel"`
	// Initrd holds kabuto-agent as /init.
	Initrd string `toml:"initrd" json:"initrd"`
	// MachineType is microvm, pc or q35.
	MachineType string `toml:"machine_type" json:"machine_type"`
	// VCPUs is the number of vCPUs when the spec sets no CPU limit.
	VCPUs int `toml:"vcpus" json:"vcpus"`
	// MaxVCPUs caps the vCPUs derived from a spec's CPU quota.
	MaxVCPUs int `toml:"max_vcpus" json:"max_vcpus"`
	// MemoryMiB is the guest RAM when the spec sets no memory limit.
	MemoryMiB int `toml:"memory_mib" json:"memory_mib"`
	// KernelParams are appended to the built-in kernel command line.
	KernelParams string `toml:"kernel_params" json:"kernel_params"`
	// Accel is auto, kvm or tcg. auto picks kvm only when /dev/kvm opens and
	// the CPU advertises vmx or svm.
	Accel string `toml:"accel" json:"accel"`
	// TBSizeMiB is the TCG translation cache size (0 = QEMU's default).
	TBSizeMiB int `toml:"tcg_tb_size_mib" json:"tcg_tb_size_mib"`
	// FreePageReporting gives the guest a virtio-balloon whose free page
	// reporting hands the RAM the guest frees back to the host.
	FreePageReporting bool `toml:"free_page_reporting" json:"free_page_reporting"`
	// TransparentHugepages lets the host back QEMU's memory (guest RAM, the
	// TCG translation cache) with transparent huge pages. QEMU asks for
	// them; off, kabuto starts QEMU with PR_SET_THP_DISABLE, and the host
	// counts what the guest touches in 4 KiB pages, not 2 MiB ones (~6 MiB
	// less per idle VM under TCG, for ~5 % slower boots).
	TransparentHugepages bool `toml:"transparent_hugepages" json:"transparent_hugepages"`
	// DebugConsole keeps the guest's serial console in <state>/console.log
	// and makes the kernel and agent verbose.
	DebugConsole bool `toml:"debug_console" json:"debug_console"`
	// Msize9P is the 9p transport message size in bytes.
	Msize9P int `toml:"msize_9p" json:"msize_9p"`
	// RootfsCache is the guest's 9p cache mode for the container's rootfs:
	// "mmap" keeps it on the one share with the bind mounts, coherent with
	// the host; "loose" gives it a 9p device of its own that the guest
	// caches and writes back (docs/io.md). Bind mounts stay cache=mmap.
	RootfsCache string `toml:"rootfs_cache" json:"rootfs_cache"`
}

// Agent holds settings for talking to the guest agent.
type Agent struct {
	// StartTimeout bounds the wait for a booted guest's agent to answer.
	StartTimeoutSeconds int `toml:"start_timeout_seconds" json:"start_timeout_seconds"`
	// RequestTimeout bounds a single request to a running agent.
	RequestTimeoutSeconds int `toml:"request_timeout_seconds" json:"request_timeout_seconds"`
}

// Factory is how VMs are made (docs/templating.md).
type Factory struct {
	// EnableTemplate starts containers' VMs by restoring a snapshot of a
	// booted template VM instead of booting one. Clones share the
	// template's memory pages until they write them.
	EnableTemplate bool `toml:"enable_template" json:"enable_template"`
	// TemplatePath holds the templates, each on its own tmpfs.
	TemplatePath string `toml:"template_path" json:"template_path"`
}

// Default returns the built-in configuration.
func Default() *Config {
	return &Config{
		Hypervisor: Hypervisor{
			Path:                 "qemu-system-x86_64",
			Kernel:               "/usr/share/kabuto/vmlinux",
			Initrd:               "/usr/share/kabuto/kabuto-initrd.img",
			MachineType:          "microvm",
			VCPUs:                1,
			MaxVCPUs:             4,
			MemoryMiB:            128,
			Accel:                "auto",
			Msize9P:              512000,
			RootfsCache:          "mmap",
			FreePageReporting:    true,
			TransparentHugepages: true,
		},
		Agent: Agent{
			StartTimeoutSeconds:   60,
			RequestTimeoutSeconds: 30,
		},
		Factory: Factory{
			TemplatePath: "/run/kabuto-templates",
		},
	}
}

// StartTimeout is Agent.StartTimeoutSeconds as a duration.
func (c *Config) StartTimeout() time.Duration {
	return time.Duration(c.Agent.StartTimeoutSeconds) * time.Second
}

// RequestTimeout is Agent.RequestTimeoutSeconds as a duration.
func (c *Config) RequestTimeout() time.Duration {
	return time.Duration(c.Agent.RequestTimeoutSeconds) * time.Second
}

// Load reads the configuration. explicit is the --config flag ("" if unset).
// A file named explicitly (flag or environment) must exist; the default path
// may be absent, in which case the built-in defaults apply.
func Load(explicit string) (*Config, error) {
	path := explicit
	if path == "" {
		path = os.Getenv(EnvVar)
	}
	required := path != ""
	if path == "" {
		path = DefaultPath
	}
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		if !required && errors.Is(err, os.ErrNotExist) {
			return cfg, cfg.Validate()
		}
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	md, err := toml.Decode(string(data), cfg)
	if err != nil {
		return nil, fmt.Errorf("parse configuration %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("configuration %s: unknown keys: %s", path, strings.Join(keys, ", "))
	}
	cfg.Path = path
	return cfg, cfg.Validate()
}

// Validate checks values that would otherwise fail late and obscurely.
func (c *Config) Validate() error {
	h := c.Hypervisor
	switch h.Accel {
	case "auto", "kvm", "tcg":
	default:
		return fmt.Errorf("configuration: hypervisor.accel must be auto, kvm or tcg, not %q", h.Accel)
	}
	switch h.MachineType {
	case "microvm", "pc", "q35":
	default:
		return fmt.Errorf("configuration: hypervisor.machine_type must be microvm, pc or q35, not %q", h.MachineType)
	}
	if h.VCPUs < 1 || h.VCPUs > 64 {
		return fmt.Errorf("configuration: hypervisor.vcpus must be between 1 and 64, not %d", h.VCPUs)
	}
	if h.MaxVCPUs < h.VCPUs {
		return fmt.Errorf("configuration: hypervisor.max_vcpus (%d) is below vcpus (%d)", h.MaxVCPUs, h.VCPUs)
	}
	if h.MemoryMiB < 32 {
		return fmt.Errorf("configuration: hypervisor.memory_mib must be at least 32, not %d", h.MemoryMiB)
	}
	if h.Path == "" || h.Kernel == "" || h.Initrd == "" {
		return errors.New("configuration: hypervisor.path, kernel and initrd must be set")
	}
	if h.Msize9P < 8192 || h.Msize9P > 4<<20 {
		return fmt.Errorf("configuration: hypervisor.msize_9p must be between 8192 and 4194304, not %d", h.Msize9P)
	}
	switch h.RootfsCache {
	case "mmap", "loose":
	default:
		return fmt.Errorf("configuration: hypervisor.rootfs_cache must be mmap or loose, not %q", h.RootfsCache)
	}
	if c.Agent.StartTimeoutSeconds < 1 || c.Agent.RequestTimeoutSeconds < 1 {
		return errors.New("configuration: agent timeouts must be at least 1 second")
	}
	if p := c.Factory.TemplatePath; !filepath.IsAbs(p) || filepath.Clean(p) == "/" {
		return fmt.Errorf("configuration: factory.template_path must be an absolute path below /, not %q", p)
	}
	return nil
}

// TOML renders the configuration as a TOML document.
func (c *Config) TOML() (string, error) {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		return "", err
	}
	return b.String(), nil
}
