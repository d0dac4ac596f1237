// Package clients drives kabuto through the real clients: dockerd (through
// containerd's runc shim), podman with conmon, and containerd's ctr. They
// must be running and know kabuto: tests/clients/setup.sh (make clients).
package clients

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const image = "kabuto-bb:latest"

type out struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, stdin string, name string, args ...string) out {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	var so, se strings.Builder
	c.Stdout, c.Stderr = &so, &se
	if stdin != "" {
		c.Stdin = strings.NewReader(stdin)
	}
	c.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %v timed out: %s", name, args, se.String())
	}
	return out{so.String(), se.String(), c.ProcessState.ExitCode()}
}

func docker(t *testing.T, args ...string) out { t.Helper(); return run(t, "", "docker", args...) }

func mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	r := docker(t, args...)
	if r.code != 0 {
		t.Fatalf("docker %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

// drun is `docker run --runtime kabuto`.
func drun(t *testing.T, args ...string) out {
	t.Helper()
	return docker(t, append([]string{"run", "--runtime", "kabuto"}, args...)...)
}

// container starts a detached container and removes it (and checks for
// leaks) when the test ends.
func container(t *testing.T, args ...string) string {
	t.Helper()
	id := strings.TrimSpace(mustDocker(t, append([]string{"run", "-d", "--runtime", "kabuto"}, args...)...))
	t.Cleanup(func() {
		docker(t, "rm", "-f", id)
		checkGone(t, id)
	})
	return id
}

// checkGone asserts that nothing of container id remains on the host.
func checkGone(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []string
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, _ := os.ReadFile(p)
			if strings.Contains(string(b), id) && strings.Contains(string(b), "kabuto") {
				left = append(left, strings.ReplaceAll(string(b), "\x00", " "))
			}
		}
		// docker's and containerd's root, and kabuto's default (podman's).
		for _, root := range []string{"/run/docker/runtime-runc/moby/", "/run/kabuto/"} {
			if _, err := os.Stat(root + id); err == nil {
				left = append(left, "state dir "+root+id)
			}
		}
		mi, _ := os.ReadFile("/proc/self/mountinfo")
		if strings.Contains(string(mi), "runtime-runc/moby/"+id) || strings.Contains(string(mi), "/run/kabuto/"+id) {
			left = append(left, "mounts")
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("container %s left: %v", id[:12], left)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestDockerRunRm(t *testing.T) {
	r := drun(t, "--rm", image, "sh", "-c", "echo hello; uname -r; exit 42")
	if r.code != 42 {
		t.Fatalf("exit %d, want 42: %s", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "hello\n") || !strings.Contains(r.stdout, "-kabuto") {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestDockerStdin(t *testing.T) {
	r := run(t, "line one\nline two\n", "docker", "run", "--rm", "-i", "--runtime", "kabuto", image, "sh", "-c", "wc -l")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "2" {
		t.Errorf("got %q (exit %d) %s", r.stdout, r.code, r.stderr)
	}
}

func TestDockerTTY(t *testing.T) {
	r := drun(t, "--rm", "-t", image, "sh", "-c", "tty; stty size")
	if r.code != 0 || !strings.Contains(r.stdout, "/dev/pts/0") {
		t.Errorf("got %q (exit %d) %s", r.stdout, r.code, r.stderr)
	}
}

func TestDockerDetachLogsExec(t *testing.T) {
	id := container(t, "-e", "GREETING=hi", image, "sh", "-c", "echo started; echo $GREETING; sleep 1000")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(mustDocker(t, "logs", id), "hi") {
		if time.Now().After(deadline) {
			t.Fatalf("logs: %q", mustDocker(t, "logs", id))
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := docker(t, "exec", id, "sh", "-c", "echo in-exec; exit 3")
	if r.code != 3 || r.stdout != "in-exec\n" {
		t.Errorf("exec: %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = docker(t, "exec", "-e", "X=y", "-w", "/tmp", "-u", "1000:1000", id, "sh", "-c", `echo "$X $(pwd) $(id -u):$(id -g)"`)
	if r.stdout != "y /tmp 1000:1000\n" {
		t.Errorf("exec env/workdir/user: %q %s", r.stdout, r.stderr)
	}
	r = docker(t, "exec", "-t", id, "tty")
	if !strings.Contains(r.stdout, "/dev/pts/") {
		t.Errorf("exec -t: %q %s", r.stdout, r.stderr)
	}
	if top := mustDocker(t, "top", id); !strings.Contains(top, "kabuto") {
		t.Errorf("top: %s", top)
	}
	stats := mustDocker(t, "stats", "--no-stream", "--format", "{{.MemUsage}} {{.CPUPerc}}", id)
	if strings.HasPrefix(stats, "0B") {
		t.Errorf("stats: %q", stats)
	}
}

func TestDockerStop(t *testing.T) {
	id := container(t, image, "sh", "-c", "trap 'echo got-term; exit 0' TERM; while true; do sleep 0.1; done")
	time.Sleep(time.Second)
	mustDocker(t, "stop", "-t", "10", id)
	if code := strings.TrimSpace(mustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", id)); code != "0" {
		t.Errorf("SIGTERM-honouring container exited %s", code)
	}
	if !strings.Contains(mustDocker(t, "logs", id), "got-term") {
		t.Error("the trap did not run")
	}
	id2 := container(t, image, "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done")
	time.Sleep(time.Second)
	mustDocker(t, "stop", "-t", "1", id2)
	if code := strings.TrimSpace(mustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", id2)); code != "137" {
		t.Errorf("SIGTERM-ignoring container exited %s, want 137", code)
	}
}

func TestDockerKillSignalRestart(t *testing.T) {
	id := container(t, image, "sh", "-c", "trap 'echo got-usr1' USR1; while true; do sleep 0.1; done")
	time.Sleep(time.Second)
	mustDocker(t, "kill", "-s", "USR1", id)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(mustDocker(t, "logs", id), "got-usr1") {
		if time.Now().After(deadline) {
			t.Fatal("USR1 not delivered")
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustDocker(t, "restart", "-t", "1", id)
	if s := strings.TrimSpace(mustDocker(t, "inspect", "-f", "{{.State.Status}}", id)); s != "running" {
		t.Errorf("after restart: %s", s)
	}
}

func TestDockerPause(t *testing.T) {
	id := container(t, image, "sleep", "1000")
	mustDocker(t, "pause", id)
	if s := strings.TrimSpace(mustDocker(t, "inspect", "-f", "{{.State.Status}}", id)); s != "paused" {
		t.Errorf("after pause: %s", s)
	}
	mustDocker(t, "unpause", id)
	if r := docker(t, "exec", id, "true"); r.code != 0 {
		t.Errorf("exec after unpause: %s", r.stderr)
	}
}

func TestDockerVolumesAndOptions(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	file := filepath.Join(t.TempDir(), "f.txt")
	os.WriteFile(file, []byte("from-host\n"), 0o644)
	r := drun(t, "--rm", "-v", dir+":/data", "-v", file+":/f.txt:ro", "--tmpfs", "/scratch",
		"-e", "A=b", "-w", "/data", "--user", "1000:1000", image, "sh", "-c",
		`echo written > /data/out; cat /f.txt; echo x >> /f.txt 2>/dev/null && echo ro-broken; `+
			`grep -q " /scratch tmpfs" /proc/mounts && echo tmpfs-ok; echo "$A $(pwd) $(id -u)"`)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "out")); string(b) != "written\n" {
		t.Errorf("write to the bind mount did not land on the host: %q", b)
	}
	for _, want := range []string{"from-host", "tmpfs-ok", "b /data 1000"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q: %q", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "ro-broken") {
		t.Error("a read-only file mount was writable")
	}
	r = drun(t, "--rm", "--read-only", image, "sh", "-c", "touch /x && echo writable")
	if strings.Contains(r.stdout, "writable") {
		t.Error("--read-only rootfs was writable")
	}
	r = drun(t, "--rm", "--init", image, "ps", "-o", "pid,comm")
	if !strings.Contains(r.stdout, "docker-init") {
		t.Errorf("--init: %q %s", r.stdout, r.stderr)
	}
}

func TestDockerNetworks(t *testing.T) {
	r := drun(t, "--rm", "--network", "none", image, "sh", "-c", "ls /sys/class/net")
	if strings.TrimSpace(r.stdout) != "lo" {
		t.Errorf("--network none: %q %s", r.stdout, r.stderr)
	}
	r = drun(t, "--rm", image, "sh", "-c", "ip -4 addr show eth0; ping -c 1 -W 5 $(ip route | awk '/default/ {print $3}')")
	if r.code != 0 || !strings.Contains(r.stdout, "inet 172.17.") {
		t.Errorf("bridge: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = drun(t, "--rm", "--network", "host", image, "true")
	if r.code == 0 || !strings.Contains(r.stderr, "host network") {
		t.Errorf("--network host: exit %d %s", r.code, r.stderr)
	}
}

func TestDockerPublish(t *testing.T) {
	container(t, "-p", "18080:80", image, "httpd", "-f", "-p", "80", "-h", "/www")
	if body := httpGet(t, "http://127.0.0.1:18080/index.html"); body != "hello from kabuto\n" {
		t.Errorf("published port answered %q", body)
	}
}

// httpGet fetches url, retrying while the server comes up.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return ""
}

func TestDockerUpdate(t *testing.T) {
	id := container(t, image, "sleep", "1000")
	mustDocker(t, "update", "--memory", "48m", "--memory-swap", "96m", "--cpus", "0.5", id)
	r := docker(t, "exec", id, "sh", "-c", `cg=/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup); cat $cg/memory.max $cg/cpu.max`)
	if r.stdout != "50331648\n50000 100000\n" {
		t.Errorf("limits in the guest: %q %s", r.stdout, r.stderr)
	}
	r = docker(t, "update", "--memory", "2g", "--memory-swap", "4g", id)
	if r.code == 0 || !strings.Contains(r.stderr, "no memory hotplug") {
		t.Errorf("update beyond the VM: %d %s", r.code, r.stderr)
	}
}

// Two containers on a user-defined network find each other by name through
// docker's embedded DNS (127.0.0.11), which the guest relays to the host.
func TestDockerUserNetworkDNS(t *testing.T) {
	const netName = "kabuto-test-net"
	docker(t, "network", "rm", netName)
	mustDocker(t, "network", "create", netName)
	t.Cleanup(func() { docker(t, "network", "rm", netName) })
	container(t, "--network", netName, "--name", "kabuto-web", image, "httpd", "-f", "-p", "80", "-h", "/www")
	r := drun(t, "--rm", "--network", netName, image, "sh", "-c",
		// busybox's static wget resolves names through glibc's NSS, which the
		// image lacks: nslookup (busybox's own resolver) asks the DNS.
		`cat /etc/resolv.conf; ip=$(nslookup kabuto-web | awk '/^Address/ && !/127.0.0.11/ {print $NF}' | tail -1); echo "ip=$ip"; `+
			`for i in 1 2 3 4 5; do wget -q -O - http://$ip/index.html && exit 0; sleep 1; done; exit 1`)
	if r.code != 0 || !strings.Contains(r.stdout, "nameserver 127.0.0.11") || !strings.Contains(r.stdout, "hello from kabuto") {
		t.Errorf("by name on %s: exit %d %q %s", netName, r.code, r.stdout, r.stderr)
	}
	// A name docker does not know fails cleanly (NXDOMAIN relayed, no hang).
	r = drun(t, "--rm", "--network", netName, image, "nslookup", "no-such-container")
	if r.code == 0 {
		t.Errorf("unknown name resolved: %q", r.stdout)
	}
}

// --shm-size sizes the container's /dev/shm (a tmpfs in the guest).
func TestDockerShmSize(t *testing.T) {
	r := drun(t, "--rm", "--shm-size", "96m", image, "sh", "-c", "df -k /dev/shm | tail -1; dd if=/dev/zero of=/dev/shm/f bs=1M count=80 2>&1 >/dev/null && echo wrote")
	f := strings.Fields(r.stdout)
	if r.code != 0 || len(f) < 2 || f[1] != "98304" || !strings.Contains(r.stdout, "wrote") {
		t.Errorf("--shm-size 96m: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
}

// A resize of a -t container's terminal (the docker API call the CLI makes
// on SIGWINCH) reaches the terminal in the guest.
func TestDockerTTYResize(t *testing.T) {
	id := container(t, "-t", image, "sleep", "1000")
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", "/var/run/docker.sock")
		},
	}}
	for _, size := range [][2]int{{41, 123}, {25, 80}} {
		resp, err := client.Post(fmt.Sprintf("http://docker/containers/%s/resize?h=%d&w=%d", id, size[0], size[1]), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("resize: %s", resp.Status)
		}
		want := fmt.Sprintf("%d %d", size[0], size[1])
		var got string
		for i := 0; i < 50 && got != want; i++ {
			got = strings.TrimSpace(docker(t, "exec", id, "stty", "-F", "/dev/pts/0", "size").stdout)
			if got != want {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if got != want {
			t.Errorf("after resize to %s the guest terminal is %q", want, got)
		}
	}
}
