package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// listNICs is a container command that writes the guest's interfaces, their
// IPv4 addresses and how many virtio-net devices the VM has to /out/net.
const listNICs = "{ ls /sys/class/net; ip -4 addr; echo virtio-net: $(ls /sys/bus/virtio/drivers/virtio_net | grep -c '^virtio'); } > /out/net 2>&1"

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// vethPair makes a host veth pair and removes it at the end of the test
// (the end moved into a container's namespace goes with that namespace).
func vethPair(t *testing.T, host, peer, hostAddr string) {
	t.Helper()
	exec.Command("ip", "link", "del", host).Run()
	ipCmd(t, "link", "add", host, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	ipCmd(t, "addr", "add", hostAddr, "dev", host)
	ipCmd(t, "link", "set", host, "up")
}

// nicListBundle is a bundle running listNICs, with /out bound to the
// returned host dir.
func nicListBundle(e *env) (string, *specs.Spec, string) {
	out := e.t.TempDir()
	b, spec := e.bundle("sh", "-c", listNICs)
	spec.Mounts = append(spec.Mounts, specsBind(out, "/out"))
	return b, spec, out
}

func readNet(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "net"))
	if err != nil {
		t.Fatalf("the container wrote no interface list: %v", err)
	}
	return string(b)
}

// `run` of a bundle with a new network namespace and no create-time hooks:
// nothing can bring an interface in before the start, so the VM gets no NIC
// and the container sees lo alone.
func TestNetworkRunNewNamespace(t *testing.T) {
	e := newEnv(t)
	b, spec, out := nicListBundle(e)
	writeSpec(t, b, spec)
	e.must("run", "--bundle", b, "net-run")
	got := readNet(t, out)
	if strings.Fields(got)[0] != "lo" || strings.Contains(got, "eth") || !strings.Contains(got, "virtio-net: 0") {
		t.Errorf("container of a new network namespace sees:\n%s\nwant lo alone and no virtio-net device", got)
	}
}

// docker 28's order: create, move an interface into the namespace through
// the container's pid, start. The VM has a NIC from create, and start
// mirrors the interface into it.
func TestNetworkInterfaceAddedAfterCreate(t *testing.T) {
	e := newEnv(t)
	b, spec, out := nicListBundle(e)
	writeSpec(t, b, spec)
	e.must("create", "--bundle", b, "net-late")
	defer e.run("", "delete", "--force", "net-late")
	pid := fmt.Sprint(e.state("net-late")["pid"])
	vethPair(t, "kbt-late-h", "kbt-late-c", "10.213.7.1/24")
	ipCmd(t, "link", "set", "kbt-late-c", "netns", pid)
	for _, a := range [][]string{
		{"addr", "add", "10.213.7.2/24", "dev", "kbt-late-c"},
		{"link", "set", "kbt-late-c", "up"},
	} {
		if o, err := exec.Command("nsenter", append([]string{"-t", pid, "-n", "ip"}, a...)...).CombinedOutput(); err != nil {
			t.Fatalf("in the container's namespace: ip %v: %v: %s", a, err, o)
		}
	}
	e.must("start", "net-late")
	e.waitStatus("net-late", "stopped", time.Minute)
	got := readNet(t, out)
	if !strings.Contains(got, "kbt-late-c") || !strings.Contains(got, "10.213.7.2/24") || !strings.Contains(got, "virtio-net: 1") {
		t.Errorf("interface moved in after create not mirrored; the container sees:\n%s", got)
	}
}

// `run` with a prestart hook (docker 20.10 moves its veth in there): the
// VM keeps a NIC, and the interface the hook brings in is mirrored.
func TestNetworkRunWithPrestartHook(t *testing.T) {
	e := newEnv(t)
	b, spec, out := nicListBundle(e)
	vethPair(t, "kbt-hook-h", "kbt-hook-c", "10.213.8.1/24")
	script := `pid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p') && ip link set kbt-hook-c netns "$pid" &&
nsenter -t "$pid" -n sh -c 'ip addr add 10.213.8.2/24 dev kbt-hook-c && ip link set kbt-hook-c up'`
	spec.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", script}}}}
	writeSpec(t, b, spec)
	e.must("run", "--bundle", b, "net-hook")
	got := readNet(t, out)
	if !strings.Contains(got, "kbt-hook-c") || !strings.Contains(got, "10.213.8.2/24") {
		t.Errorf("interface moved in by a prestart hook not mirrored; the container sees:\n%s", got)
	}
}
