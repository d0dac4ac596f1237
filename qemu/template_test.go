package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func templateTestVM(t *testing.T) *VM {
	dir := t.TempDir()
	files := map[string]os.FileMode{"qemu": 0o755, "vmlinux": 0o644, "initrd": 0o644}
	for name, mode := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), mode); err != nil {
			t.Fatal(err)
		}
	}
	return &VM{
		Name: "kabuto-a", Binary: filepath.Join(dir, "qemu"), Kernel: filepath.Join(dir, "vmlinux"),
		Initrd: filepath.Join(dir, "initrd"), Machine: "microvm", Accel: "tcg", VCPUs: 1, MemoryMiB: 128,
		TSCKHz: 2596136, Msize9P: 512000, StateDir: "/run/kabuto/a", ShareDir: "/run/kabuto/a/shared",
		ShareTag: "kshare", PortName: "kabuto.agent", Template: true,
		NICs: []NIC{{MAC: "02:6b:62:74:00:00", Tap: "kbtap0"}},
	}
}

func TestMemoryArgs(t *testing.T) {
	vm := templateTestVM(t)
	if a := strings.Join(vm.Args(), " "); strings.Contains(a, "memory-backend") || strings.Contains(a, "-incoming") {
		t.Errorf("plain VM has templating arguments: %s", a)
	}
	vm.Memory = &MemoryFile{Path: "/t/a,b/memory", Shared: true}
	a := strings.Join(vm.Args(), " ")
	for _, want := range []string{
		"-machine microvm,acpi=off,x-option-roms=off,memory-backend=kabuto-ram",
		"-object memory-backend-file,id=kabuto-ram,size=128M,mem-path=/t/a,,b/memory,share=on",
		"kabuto.template=1",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("template args lack %q: %s", want, a)
		}
	}
	if strings.Contains(a, "-incoming") {
		t.Errorf("template VM waits for a migration: %s", a)
	}
	vm.Memory.Shared, vm.Incoming = false, true
	a = strings.Join(vm.Args(), " ")
	if !strings.Contains(a, "mem-path=/t/a,,b/memory,share=off -incoming defer") {
		t.Errorf("clone args: %s", a)
	}
}

func TestTemplateKey(t *testing.T) {
	vm := templateTestVM(t)
	key, files, err := TemplateKey(vm)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 64 || len(files) != 3 {
		t.Fatalf("key %q, files %v", key, files)
	}
	// Per-VM host-side parts do not change the guest.
	same := *vm
	same.Name, same.StateDir, same.ShareDir, same.TSCKHz = "kabuto-b", "/x/b", "/x/b/shared", 2596000
	same.NICs = []NIC{{MAC: vm.NICs[0].MAC, Tap: "other"}}
	same.Memory, same.Incoming = &MemoryFile{Path: "/elsewhere"}, true
	if k, _, err := TemplateKey(&same); err != nil || k != key {
		t.Errorf("per-VM differences changed the key: %v", err)
	}
	for name, change := range map[string]func(v *VM){
		"memory":        func(v *VM) { v.MemoryMiB = 256 },
		"vcpus":         func(v *VM) { v.VCPUs = 2 },
		"nics":          func(v *VM) { v.NICs = nil },
		"mac":           func(v *VM) { v.NICs = []NIC{{MAC: "02:00:00:00:00:01", Tap: "kbtap0"}} },
		"kernel params": func(v *VM) { v.KernelParams = "foo=1" },
		"machine":       func(v *VM) { v.Machine = "pc" },
		"balloon":       func(v *VM) { v.FreePageReporting = true },
		"debug":         func(v *VM) { v.Debug = true },
		"rootfs device": func(v *VM) { v.RootfsDir, v.RootfsTag = "/x/a/rootshare", "krootfs" },
	} {
		c := *vm
		change(&c)
		if k, _, err := TemplateKey(&c); err != nil || k == key {
			t.Errorf("changing the %s does not change the key (%v)", name, err)
		}
	}
	// Where the rootfs's own share is does not change the guest either.
	withRoot, otherRoot := *vm, *vm
	withRoot.RootfsDir, withRoot.RootfsTag = "/x/a/rootshare", "krootfs"
	otherRoot.RootfsDir, otherRoot.RootfsTag = "/x/b/rootshare", "krootfs"
	k1, _, err1 := TemplateKey(&withRoot)
	k2, _, err2 := TemplateKey(&otherRoot)
	if err1 != nil || err2 != nil || k1 != k2 {
		t.Errorf("the rootfs share's host path changed the key: %v %v", err1, err2)
	}
	// A rebuilt kernel is another template.
	later := time.Now().Add(time.Minute)
	os.Chtimes(vm.Kernel, later, later)
	if k, _, err := TemplateKey(vm); err != nil || k == key {
		t.Errorf("a changed kernel file does not change the key (%v)", err)
	}
	id, err := StatFileID(vm.Kernel)
	if err != nil || id == files[1] {
		t.Errorf("file identity unchanged: %v %v", id, err)
	}
	os.Remove(vm.Initrd)
	if _, _, err := TemplateKey(vm); err == nil || !strings.Contains(err.Error(), vm.Initrd) {
		t.Errorf("missing initrd: %v", err)
	}
}
