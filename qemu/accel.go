// Package qemu owns the VM process of a container on the host: choosing the
// accelerator, building QEMU's command line, launching it detached, and
// talking QMP to it.
package qemu

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Accel is the outcome of accelerator detection, with the reason shown by
// `kabuto check`.
type Accel struct {
	Name   string // "kvm" or "tcg"
	Reason string
}

// cpuFlags returns the flags of the first CPU in /proc/cpuinfo.
func cpuFlags(cpuinfo string) map[string]bool {
	flags := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			flags[f] = true
		}
		break
	}
	return flags
}

// DetectAccel resolves mode (auto, kvm, tcg). auto picks KVM only when
// /dev/kvm opens read-write and the CPU advertises vmx or svm: a PVM host
// exposes /dev/kvm without them, and an ordinary guest kernel hangs there.
func DetectAccel(mode string) (Accel, error) {
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	return detectAccel(mode, string(cpuinfo), kvmUsable)
}

func kvmUsable() error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

func detectAccel(mode, cpuinfo string, openKVM func() error) (Accel, error) {
	flags := cpuFlags(cpuinfo)
	hw := flags["vmx"] || flags["svm"]
	kvmErr := openKVM()
	switch mode {
	case "tcg":
		return Accel{"tcg", "configured: accel = tcg"}, nil
	case "kvm":
		if kvmErr != nil {
			return Accel{}, fmt.Errorf("accel = kvm but /dev/kvm is not usable: %w", kvmErr)
		}
		return Accel{"kvm", "configured: accel = kvm"}, nil
	case "auto", "":
	default:
		return Accel{}, fmt.Errorf("unknown accelerator %q", mode)
	}
	switch {
	case kvmErr != nil:
		return Accel{"tcg", fmt.Sprintf("/dev/kvm not usable (%v): software emulation (TCG)", kvmErr)}, nil
	case !hw:
		return Accel{"tcg", "/dev/kvm opens but the CPU has no vmx/svm (a paravirtualized or nested host): software emulation (TCG)"}, nil
	default:
		return Accel{"kvm", "/dev/kvm usable and the CPU has hardware virtualization"}, nil
	}
}

// HostTSCKHz returns the host TSC frequency in kHz: what the kernel reports
// when it knows it exactly (tsc_known_freq), else a short calibration against
// CLOCK_MONOTONIC. A guest under TCG reads the host's TSC;
// telling it the frequency (tsc_early_khz) avoids a calibration that fails
// under emulation and hangs a microvm guest.
func HostTSCKHz() uint64 {
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	if khz := tscKHz(string(cpuinfo)); khz != 0 {
		return khz
	}
	return calibrateTSC()
}

func tscKHz(cpuinfo string) uint64 {
	if !cpuFlags(cpuinfo)["tsc_known_freq"] {
		return 0
	}
	sc := bufio.NewScanner(strings.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || mhz <= 0 {
			return 0
		}
		return uint64(mhz*1000 + 0.5)
	}
	return 0
}
