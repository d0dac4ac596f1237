package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kabuto-runtime/kabuto/protocol"
)

// Names of the sockets and files QEMU keeps in the state directory. Sockets
// are given to QEMU relative to the state dir (its working directory at
// launch) so that long state dirs do not overflow sun_path.
const (
	AgentSocket = "agent.sock"
	QMPSocket   = "qmp.sock"
	LogFile     = "qemu.log"
	ConsoleLog  = "console.log"
)

// VM is everything that shapes one QEMU command line.
type VM struct {
	Name      string
	Binary    string
	Kernel    string
	Initrd    string
	Machine   string // microvm, pc or q35
	Accel     string // kvm or tcg
	VCPUs     int
	MemoryMiB int
	TBSizeMiB int
	// FreePageReporting adds a virtio-balloon that reports free guest pages
	// (the host then drops them from QEMU's memory).
	FreePageReporting bool
	// NoTHP starts QEMU with transparent huge pages disabled for its memory.
	NoTHP        bool
	TSCKHz       uint64
	Msize9P      int
	KernelParams string
	Debug        bool
	// StateDir is QEMU's working directory and holds its sockets.
	StateDir string
	// ShareDir is exported to the guest over virtio-9p as protocol.ShareTag.
	ShareDir string
	ShareTag string
	// RootfsDir, when set, is exported as a second virtio-9p device tagged
	// RootfsTag: the rootfs's own share, which the guest mounts with a
	// cache mode of its own.
	RootfsDir string
	RootfsTag string
	// PortName is the virtio-serial port name of the agent channel.
	PortName string
	// NICs gives the guest one virtio-net NIC each, with its MAC, on a tap
	// of that name created by QEMU in its (the container's) netns.
	NICs []NIC
	// VM templating (template.go). Template boots the agent as a template
	// (kabuto.template=1); Memory backs the RAM with a file; Incoming makes
	// QEMU wait for a template's device state instead of booting.
	Template bool
	Memory   *MemoryFile
	Incoming bool
}

// transport returns the suffix of virtio device names: microvm has virtio-mmio
// only, pc and q35 have PCI.
func (vm *VM) transport() string {
	if vm.Machine == "microvm" {
		return "device"
	}
	return "pci"
}

// KernelCmdline is the guest kernel command line.
func (vm *VM) KernelCmdline() string {
	p := []string{
		"console=ttyS0",
		// No ACPI on microvm: reboot by triple fault, and QEMU's -no-reboot
		// turns any reboot (or panic) into a QEMU exit.
		"reboot=t", "panic=-1",
		"no_timer_check",
		// QEMU's LAPIC timer runs at 1 GHz; with HZ=100 one tick is 10^7
		// cycles. Our kernel skips its slow calibration when told.
		"lapic_timer_period=10000000",
		"random.trust_cpu=on",
		"init=/init",
	}
	if vm.VCPUs == 1 {
		p = append(p, "noreplace-smp")
	}
	if vm.Msize9P > 0 {
		p = append(p, "kabuto.msize="+strconv.Itoa(vm.Msize9P))
	}
	if vm.TSCKHz > 0 {
		p = append(p, "tsc_early_khz="+strconv.FormatUint(vm.TSCKHz, 10))
	}
	if vm.Template {
		p = append(p, protocol.TemplateParam+"=1")
	}
	if vm.Debug {
		p = append(p, "kabuto.debug=1")
	} else {
		p = append(p, "quiet")
	}
	if s := strings.TrimSpace(vm.KernelParams); s != "" {
		p = append(p, s)
	}
	return strings.Join(p, " ")
}

// Args returns QEMU's arguments (without the binary).
func (vm *VM) Args() []string {
	t := vm.transport()
	machine := vm.Machine
	switch vm.Machine {
	case "microvm":
		machine += ",acpi=off,x-option-roms=off"
	case "pc", "q35":
		machine += ",vmport=off"
	}
	if vm.Memory != nil {
		machine += ",memory-backend=" + memoryBackendID // templating
	}
	accel := vm.Accel
	if vm.Accel == "tcg" && vm.TBSizeMiB > 0 {
		accel += ",tb-size=" + strconv.Itoa(vm.TBSizeMiB)
	}
	cpu := "max"
	if vm.Accel == "kvm" {
		cpu = "host"
	}
	a := []string{
		"-name", vm.Name,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-machine", machine,
		"-accel", accel,
		"-cpu", cpu,
		"-smp", strconv.Itoa(vm.VCPUs),
		"-m", strconv.Itoa(vm.MemoryMiB),
		"-kernel", vm.Kernel,
		"-initrd", vm.Initrd,
		"-append", vm.KernelCmdline(),
		"-serial", "file:" + filepath.Join(vm.StateDir, ConsoleLog),
		"-chardev", "socket,id=" + agentChardev + ",path=" + AgentSocket + ",server=on,wait=off",
		"-device", "virtio-serial-" + t + ",max_ports=2",
		"-device", "virtserialport,chardev=agent,name=" + vm.PortName,
	}
	a = append(a, ninePArgs(t, "share", vm.ShareDir, vm.ShareTag)...)
	if vm.RootfsDir != "" {
		a = append(a, ninePArgs(t, "rootfs", vm.RootfsDir, vm.RootfsTag)...)
	}
	a = append(a,
		"-qmp", "unix:"+QMPSocket+",server=on,wait=off",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
	)
	a = append(a, vm.memoryArgs()...) // templating
	if vm.FreePageReporting {
		a = append(a, "-device", "virtio-balloon-"+t+",free-page-reporting=on")
	}
	for i, nic := range vm.NICs {
		netdev := fmt.Sprintf("tap,id=net%d,ifname=%s,script=no,downscript=no", i, nic.Tap)
		if vm.Accel == "kvm" {
			netdev += ",vhost=on"
		}
		a = append(a, "-netdev", netdev, "-device", fmt.Sprintf("virtio-net-%s,netdev=net%d,mac=%s", t, i, nic.MAC))
	}
	if vm.Machine != "microvm" {
		a = append(a, "-bios", "qboot.rom")
	}
	return a
}

// NIC is one guest network card and the host tap behind it.
type NIC struct {
	MAC string
	Tap string
}

// qemuEscape doubles commas, QEMU's option-value escape.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// ninePArgs exports dir to the guest as a virtio-9p device (transport t)
// with mount tag tag.
func ninePArgs(t, id, dir, tag string) []string {
	return []string{
		"-fsdev", fmt.Sprintf("local,id=%s,path=%s,security_model=passthrough,multidevs=remap", id, qemuEscape(dir)),
		"-device", fmt.Sprintf("virtio-9p-%s,fsdev=%s,mount_tag=%s", t, id, tag),
	}
}
