package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kabuto-runtime/kabuto/config"
	"github.com/kabuto-runtime/kabuto/hostcgroup"
	"github.com/kabuto-runtime/kabuto/qemu"
)

var checkCommand = &cli.Command{
	Name:      "check",
	Usage:     "tell whether this host can run kabuto containers, and how",
	ArgsUsage: " ",
	Description: `The check command looks at what kabuto needs on this host: QEMU and its
version, the accelerator it will use (KVM only when /dev/kvm works and the CPU
has vmx or svm, else TCG), the guest kernel and initrd, /dev/net/tun and the
cgroup hierarchies. It exits 1 when something required is missing.`,
	Action: func(c *cli.Context) error {
		cfg, err := config.Load(c.String("config"))
		if err != nil {
			return err
		}
		failed := false
		line := func(ok bool, what, detail string) {
			mark := "ok  "
			if !ok {
				mark, failed = "FAIL", true
			}
			fmt.Printf("%s %-14s %s\n", mark, what, detail)
		}
		h := cfg.Hypervisor
		if bin, err := exec.LookPath(h.Path); err != nil {
			line(false, "qemu", fmt.Sprintf("%s not found (apt-get install qemu-system-x86)", h.Path))
		} else {
			out, _ := exec.Command(bin, "--version").Output()
			line(true, "qemu", bin+": "+strings.SplitN(string(out), "\n", 2)[0])
		}
		if a, err := qemu.DetectAccel(h.Accel); err != nil {
			line(false, "accelerator", err.Error())
		} else {
			line(true, "accelerator", a.Name+": "+a.Reason)
		}
		for _, f := range []struct{ what, path string }{{"guest kernel", h.Kernel}, {"guest initrd", h.Initrd}} {
			if fi, err := os.Stat(f.path); err != nil {
				line(false, f.what, fmt.Sprintf("%s: %v (make guest install)", f.path, errors.Unwrap(err)))
			} else {
				line(true, f.what, fmt.Sprintf("%s (%d bytes)", f.path, fi.Size()))
			}
		}
		if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
			line(false, "tun", fmt.Sprintf("/dev/net/tun: %v (container networking needs it)", err))
		} else {
			f.Close()
			line(true, "tun", "/dev/net/tun")
		}
		if ms, err := hostcgroup.Mounts(); err != nil || len(ms) == 0 {
			line(false, "cgroups", "no cgroup hierarchy mounted")
		} else {
			v := "v1"
			for _, m := range ms {
				if m.V2 && len(ms) == 1 {
					v = "v2"
				} else if m.V2 {
					v = "hybrid (v1 + v2)"
				}
			}
			line(true, "cgroups", fmt.Sprintf("%s, %d hierarchies", v, len(ms)))
		}
		if failed {
			return cli.Exit("", 1)
		}
		return nil
	},
}

var envCommand = &cli.Command{
	Name:      "env",
	Usage:     "print the effective configuration",
	ArgsUsage: " ",
	Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON instead of TOML"}},
	Action: func(c *cli.Context) error {
		cfg, err := config.Load(c.String("config"))
		if err != nil {
			return err
		}
		if c.Bool("json") {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(cfg)
		}
		t, err := cfg.TOML()
		if err != nil {
			return err
		}
		if cfg.Path != "" {
			fmt.Printf("# from %s\n", cfg.Path)
		} else {
			fmt.Println("# built-in defaults")
		}
		fmt.Print(t)
		return nil
	},
}
