package clients

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const podmanImage = "localhost/kabuto-bb:latest"

// podman runs podman the way CRI-O and podman users reach kabuto: through
// conmon, with kabuto as the OCI runtime.
func podman(t *testing.T, stdin string, args ...string) out {
	t.Helper()
	base := []string{"--runtime", "/usr/local/bin/kabuto", "--cgroup-manager", "cgroupfs"}
	return run(t, stdin, "podman", append(base, args...)...)
}

var ulimits = []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

func podmanRun(t *testing.T, args ...string) out {
	t.Helper()
	return podman(t, "", append(append([]string{"run"}, ulimits...), args...)...)
}

func TestPodmanRunRm(t *testing.T) {
	r := podmanRun(t, "--rm", podmanImage, "sh", "-c", "echo hi; uname -r; ip -4 addr show eth0; exit 7")
	if r.code != 7 || !strings.Contains(r.stdout, "-kabuto") || !strings.Contains(r.stdout, "inet ") {
		t.Errorf("exit %d: %q %s", r.code, r.stdout, r.stderr)
	}
	r = podman(t, "from stdin\n", append(append([]string{"run"}, ulimits...), "--rm", "-i", podmanImage, "cat")...)
	if r.stdout != "from stdin\n" {
		t.Errorf("-i: %q %s", r.stdout, r.stderr)
	}
}

func TestPodmanDetachedLifecycle(t *testing.T) {
	r := podmanRun(t, "-d", "-p", "18081:80", podmanImage, "sh", "-c",
		"trap 'echo got-usr1' USR1; httpd -p 80 -h /www; echo started; while true; do sleep 0.1; done")
	if r.code != 0 {
		t.Fatalf("run -d: %s", r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	defer func() {
		podman(t, "", "rm", "-f", id)
		checkGone(t, id)
	}()
	if r := podman(t, "", "exec", id, "sh", "-c", "echo in-exec; exit 4"); r.code != 4 || r.stdout != "in-exec\n" {
		t.Errorf("exec: %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r := podman(t, "", "kill", "-s", "USR1", id); r.code != 0 {
		t.Errorf("kill -s USR1: %s", r.stderr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(podman(t, "", "logs", id).stdout, "got-usr1") {
		if time.Now().After(deadline) {
			t.Fatalf("logs: %q", podman(t, "", "logs", id).stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if body := httpGet(t, "http://127.0.0.1:18081/index.html"); body != "hello from kabuto\n" {
		t.Errorf("port publish: %q", body)
	}
	if r := podman(t, "", "pause", id); r.code != 0 {
		t.Errorf("pause: %s", r.stderr)
	}
	if s := strings.TrimSpace(podman(t, "", "inspect", "-f", "{{.State.Status}}", id).stdout); s != "paused" {
		t.Errorf("status after pause: %s", s)
	}
	podman(t, "", "unpause", id)
	if r := podman(t, "", "stop", "-t", "2", id); r.code != 0 {
		t.Errorf("stop: %s", r.stderr)
	}
	if s := strings.TrimSpace(podman(t, "", "inspect", "-f", "{{.State.Status}}", id).stdout); s != "exited" {
		t.Errorf("status after stop: %s", s)
	}
}

func TestContainerdCtr(t *testing.T) {
	ctr := func(args ...string) out {
		return run(t, "", "ctr", append([]string{"-a", "/run/kabuto-ctrd/containerd.sock", "-n", "kabuto"}, args...)...)
	}
	img := "docker.io/library/kabuto-bb:latest"
	rt := []string{"--runtime", "io.containerd.runc.v2", "--runc-binary", "/usr/local/bin/kabuto"}
	r := ctr(append(append([]string{"run", "--rm"}, rt...), img, "ctr-rm", "sh", "-c", "echo from-ctr; exit 6")...)
	if r.code != 6 || r.stdout != "from-ctr\n" {
		t.Errorf("ctr run: %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r := ctr(append(append([]string{"run", "-d"}, rt...), img, "ctr-kill", "sleep", "1000")...); r.code != 0 {
		t.Fatalf("ctr run -d: %s", r.stderr)
	}
	defer func() {
		ctr("task", "rm", "-f", "ctr-kill")
		ctr("container", "rm", "ctr-kill")
	}()
	if r := ctr("task", "kill", "-s", "SIGKILL", "ctr-kill"); r.code != 0 {
		t.Errorf("task kill: %s", r.stderr)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(ctr("task", "ls").stdout, "STOPPED") {
		if time.Now().After(deadline) {
			t.Fatalf("task never stopped: %s", ctr("task", "ls").stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// inTerminal runs a command on a fresh pseudo-terminal (util-linux script),
// as a user at a shell would, typing stdin into it.
func inTerminal(t *testing.T, stdin string, args ...string) out {
	t.Helper()
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return run(t, stdin, "script", "-qec", "stty cols 97 rows 31; "+strings.Join(quoted, " "), "/dev/null")
}

func TestPodmanInteractiveTerminal(t *testing.T) {
	args := append(append([]string{"podman", "--runtime", "/usr/local/bin/kabuto", "--cgroup-manager", "cgroupfs", "run"}, ulimits...),
		"--rm", "-it", podmanImage, "sh", "-c", "tty; stty size; read line; echo got:$line; exit 3")
	r := inTerminal(t, "typed-in\n", args...)
	if r.code != 3 || !strings.Contains(r.stdout, "/dev/pts/0") || !strings.Contains(r.stdout, "31 97") || !strings.Contains(r.stdout, "got:typed-in") {
		t.Errorf("podman run -it: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
}

func TestDockerInteractiveTerminal(t *testing.T) {
	r := inTerminal(t, "typed-in\n", "docker", "run", "--runtime", "kabuto", "--rm", "-it", image,
		"sh", "-c", "tty; stty size; read line; echo got:$line; exit 3")
	if r.code != 3 || !strings.Contains(r.stdout, "/dev/pts/0") || !strings.Contains(r.stdout, "31 97") || !strings.Contains(r.stdout, "got:typed-in") {
		t.Errorf("docker run -it: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
}

// A container on two podman networks gets one guest NIC per interface, each
// reaching its own gateway; containers find each other by name through
// aardvark-dns (a nameserver on the bridge, reached through the NIC).
func TestPodmanTwoNetworksAndNames(t *testing.T) {
	nets := []string{"kabuto-test-n1", "kabuto-test-n2"}
	gws := make([]string, len(nets))
	for i, n := range nets {
		podman(t, "", "network", "rm", "-f", n)
		if r := podman(t, "", "network", "create", "--subnet", fmt.Sprintf("10.123.%d.0/24", i), n); r.code != 0 {
			t.Fatalf("network create: %s", r.stderr)
		}
		gws[i] = fmt.Sprintf("10.123.%d.1", i)
		t.Cleanup(func() { podman(t, "", "network", "rm", "-f", n) })
	}
	r := podmanRun(t, "-d", "--name", "kabuto-pweb", "--network", nets[0], podmanImage, "httpd", "-f", "-p", "80", "-h", "/www")
	if r.code != 0 {
		t.Fatalf("run -d: %s", r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	defer func() {
		podman(t, "", "rm", "-f", id)
		checkGone(t, id)
	}()
	r = podmanRun(t, "--rm", "--cap-add", "NET_RAW", "--network", strings.Join(nets, ","), podmanImage, "sh", "-c",
		"ls /sys/class/net | tr '\\n' ' '; echo; for gw in "+strings.Join(gws, " ")+"; do ping -c 1 -W 5 $gw >/dev/null && echo reached $gw; done; "+
			// Each network's aardvark-dns knows that network's containers.
			"ip=$(nslookup kabuto-pweb "+gws[0]+" | awk '/^Address/ && !/:53$/ {print $NF}' | tail -1); wget -q -O - http://$ip/index.html")
	for _, want := range append([]string{"eth0 eth1 lo", "hello from kabuto"}, "reached "+gws[0], "reached "+gws[1]) {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("two networks: no %q in %q (exit %d) %s", want, r.stdout, r.code, r.stderr)
		}
	}
}
