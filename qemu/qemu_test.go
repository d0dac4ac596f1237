package qemu

import (
	"errors"
	"strings"
	"testing"
)

func TestDetectAccel(t *testing.T) {
	ok := func() error { return nil }
	noDev := func() error { return errors.New("no such file") }
	for _, tc := range []struct {
		mode, flags string
		open        func() error
		want        string
		wantErr     bool
	}{
		{"auto", "fpu vmx sse", ok, "kvm", false},
		{"auto", "fpu svm sse", ok, "kvm", false},
		{"auto", "fpu sse hypervisor", ok, "tcg", false}, // PVM host: /dev/kvm without vmx/svm
		{"auto", "fpu vmx", noDev, "tcg", false},
		{"tcg", "vmx", ok, "tcg", false},
		{"kvm", "", ok, "kvm", false},
		{"kvm", "vmx", noDev, "", true},
		{"bogus", "", ok, "", true},
	} {
		a, err := detectAccel(tc.mode, "processor : 0\nflags\t\t: "+tc.flags+"\n", tc.open)
		if (err != nil) != tc.wantErr || a.Name != tc.want {
			t.Errorf("detectAccel(%s, %q) = %+v, %v; want %s", tc.mode, tc.flags, a, err, tc.want)
		}
		if err == nil && a.Reason == "" {
			t.Errorf("no reason given for %+v", a)
		}
	}
}

func TestTSCKHz(t *testing.T) {
	info := "cpu MHz\t\t: 2596.136\nflags\t\t: fpu tsc constant_tsc tsc_known_freq\n"
	if got := tscKHz(info); got != 2596136 {
		t.Errorf("tscKHz = %d", got)
	}
	if got := tscKHz("cpu MHz : 1200.0\nflags : fpu tsc\n"); got != 0 {
		t.Errorf("tscKHz without tsc_known_freq = %d, want 0", got)
	}
	if khz := calibrateTSC(); khz < 100_000 {
		t.Errorf("calibrated TSC %d kHz is implausible", khz)
	}
}

func TestArgs(t *testing.T) {
	vm := &VM{
		Name: "kabuto-x", Binary: "qemu-system-x86_64", Kernel: "/k", Initrd: "/i",
		Machine: "microvm", Accel: "tcg", VCPUs: 1, MemoryMiB: 128, TBSizeMiB: 16,
		TSCKHz: 2596136, StateDir: "/run/kabuto/x", ShareDir: "/run/kabuto/x/shared,odd",
		ShareTag: "kshare", PortName: "kabuto.agent",
	}
	a := strings.Join(vm.Args(), " ")
	for _, want := range []string{
		"-machine microvm,acpi=off", "-accel tcg,tb-size=16", "-smp 1", "-m 128",
		"-device virtio-serial-device", "virtio-9p-device,fsdev=share,mount_tag=kshare",
		"path=/run/kabuto/x/shared,,odd,", "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny", "-nodefaults",
		"tsc_early_khz=2596136", "noreplace-smp", "quiet",
		"path=" + AgentSocket + ",server=on,wait=off",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("args lack %q:\n%s", want, a)
		}
	}
	if strings.Contains(a, "-netdev") {
		t.Errorf("a VM without NICs has a netdev:\n%s", a)
	}
	if strings.Contains(a, "fsdev=rootfs") {
		t.Errorf("a VM without RootfsDir has a rootfs 9p device:\n%s", a)
	}
	vm.RootfsDir, vm.RootfsTag = "/run/kabuto/x/rootshare", "krootfs"
	a = strings.Join(vm.Args(), " ")
	for _, want := range []string{
		"-fsdev local,id=rootfs,path=/run/kabuto/x/rootshare,security_model=passthrough,multidevs=remap -device virtio-9p-device,fsdev=rootfs,mount_tag=krootfs",
		"virtio-9p-device,fsdev=share,mount_tag=kshare",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("args lack %q:\n%s", want, a)
		}
	}
	vm.RootfsDir, vm.RootfsTag = "", ""
	vm.NICs = []NIC{{MAC: "02:00:00:00:00:01", Tap: "kbtap0"}, {MAC: "02:00:00:00:00:02", Tap: "kbtap1"}}
	a = strings.Join(vm.Args(), " ")
	for _, want := range []string{
		"-netdev tap,id=net0,ifname=kbtap0,script=no,downscript=no -device virtio-net-device,netdev=net0,mac=02:00:00:00:00:01",
		"-netdev tap,id=net1,ifname=kbtap1,script=no,downscript=no -device virtio-net-device,netdev=net1,mac=02:00:00:00:00:02",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("args lack %q:\n%s", want, a)
		}
	}
	vm.Machine, vm.Accel, vm.VCPUs, vm.Debug = "q35", "kvm", 2, true
	a = strings.Join(vm.Args(), " ")
	for _, want := range []string{"-device virtio-serial-pci", "virtio-9p-pci", "-cpu host", "kabuto.debug=1", "-bios qboot.rom", "vhost=on", "virtio-net-pci,netdev=net1"} {
		if !strings.Contains(a, want) {
			t.Errorf("q35/kvm args lack %q:\n%s", want, a)
		}
	}
	for _, bad := range []string{"noreplace-smp", "tb-size", " quiet"} {
		if strings.Contains(a, bad) {
			t.Errorf("q35/kvm/2 vCPU args contain %q", bad)
		}
	}
}
