package integration

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rootfsCacheLoose is the configuration line of a write-back rootfs.
const rootfsCacheLoose = `rootfs_cache = "loose"`

// guestMounts returns the container's /proc/mounts line of each of dsts
// (by mount point).
func guestMounts(t *testing.T, mounts string, dsts ...string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, l := range strings.Split(mounts, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		for _, d := range dsts {
			if f[1] == d {
				got[d] = l // the last one wins: the topmost mount
			}
		}
	}
	for _, d := range dsts {
		if got[d] == "" {
			t.Fatalf("no mount at %s in the container:\n%s", d, mounts)
		}
	}
	return got
}

// deleteAtEnd force-deletes id when the test ends, should it fail midway:
// a container left running keeps bind mounts of the shared rootfs below
// the test's temporary directory, which its removal would descend into.
func (e *env) deleteAtEnd(id string) {
	e.t.Cleanup(func() { e.run("", "delete", "--force", id) })
}

// uniqueDataDir is a fresh directory below the shared rootfs's /data (the
// busybox rootfs is shared by every test) and its path in the container.
func uniqueDataDir(t *testing.T) (host, guest string) {
	t.Helper()
	name := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	host = filepath.Join(sharedRootfs(t), "data", name)
	t.Cleanup(func() { os.RemoveAll(host) })
	return host, "/data/" + name
}

func md5File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// checkSmallFiles checks the n files small/<i> holding "file-<i>".
func checkSmallFiles(t *testing.T, dir string, n int) {
	t.Helper()
	bad := 0
	for i := 1; i <= n; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "small", fmt.Sprint(i)))
		if err != nil || string(b) != fmt.Sprintf("file-%d\n", i) {
			if bad++; bad <= 3 {
				t.Errorf("small file %d on the host: %q, %v", i, b, err)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d small files are missing or wrong on the host", bad, n)
	}
}

// writeScript writes a 64 MiB random file (its md5 printed as "MD5 <sum>")
// and n small files below dir, in the container.
func writeScript(dir string, mib, n int) string {
	return fmt.Sprintf(`set -e; mkdir -p %[1]s/small; cd %[1]s
dd if=/dev/urandom of=big bs=1M count=%[2]d 2>/dev/null
echo MD5 $(md5sum big | cut -d' ' -f1)
i=1; while [ $i -le %[3]d ]; do echo file-$i > small/$i; i=$((i+1)); done`, dir, mib, n)
}

func md5FromOutput(t *testing.T, out string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "MD5 "); ok {
			return strings.TrimSpace(s)
		}
	}
	t.Fatalf("no MD5 line in %q", out)
	return ""
}

// TestRootfsCacheChoice: by default the rootfs is on the one 9p share with
// the bind mounts (cache=mmap); with rootfs_cache = "loose" it is on a 9p
// device of its own mounted cache=loose, and bind mounts stay cache=mmap.
func TestRootfsCacheChoice(t *testing.T) {
	vol := t.TempDir()
	for _, tc := range []struct {
		conf, rootTag, rootCache string
	}{
		{"", "kshare", "mmap"},
		{rootfsCacheLoose, "krootfs", "loose"},
	} {
		e := newEnv(t, tc.conf)
		if out := e.must("env"); !strings.Contains(out, fmt.Sprintf("rootfs_cache = %q", tc.rootCache)) {
			t.Errorf("kabuto env with %q does not show rootfs_cache = %q:\n%s", tc.conf, tc.rootCache, out)
		}
		b, spec := e.bundle("cat", "/proc/mounts")
		spec.Mounts = append(spec.Mounts, specsBind(vol, "/vol"))
		writeSpec(t, b, spec)
		e.deleteAtEnd("choice")
		out := e.must("run", "--bundle", b, "choice")
		m := guestMounts(t, out, "/", "/vol")
		if f := strings.Fields(m["/"]); f[0] != tc.rootTag || f[2] != "9p" || !strings.Contains(f[3], ","+tc.rootCache+",") {
			t.Errorf("%q: rootfs mount %q, want 9p %s with cache=%s", tc.conf, m["/"], tc.rootTag, tc.rootCache)
		}
		if f := strings.Fields(m["/vol"]); f[0] != "kshare" || !strings.Contains(f[3], ",mmap,") {
			t.Errorf("%q: bind mount %q, want the kshare 9p share with cache=mmap", tc.conf, m["/vol"])
		}
	}
}

// TestRootfsCacheLooseDurability: what a container wrote to a write-back
// rootfs is all on the host as soon as `kabuto run` returns.
func TestRootfsCacheLooseDurability(t *testing.T) {
	e := newEnv(t, rootfsCacheLoose)
	host, guest := uniqueDataDir(t)
	const n = 1000
	b, _ := e.bundle("sh", "-c", writeScript(guest, 64, n))
	e.deleteAtEnd("durable")
	r := e.run("", "run", "--bundle", b, "durable")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want := md5FromOutput(t, r.stdout)
	fi, err := os.Stat(filepath.Join(host, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 64<<20 {
		t.Errorf("the host sees %d bytes of the 64 MiB file", fi.Size())
	}
	if got := md5File(t, filepath.Join(host, "big")); got != want {
		t.Errorf("the host's copy has md5 %s, the container wrote %s", got, want)
	}
	checkSmallFiles(t, host, n)
}

// TestRootfsCacheLooseLifecycle follows docker's and podman's flow: create,
// start, exec that writes, pause (the host reads a paused container's
// rootfs: docker commit), resume, kill, delete. Bind mounts stay coherent
// with the host both ways.
func TestRootfsCacheLooseLifecycle(t *testing.T) {
	e := newEnv(t, rootfsCacheLoose)
	host, guest := uniqueDataDir(t)
	vol := t.TempDir()
	b, spec := e.bundle("sleep", "1000")
	spec.Mounts = append(spec.Mounts, specsBind(vol, "/vol"))
	writeSpec(t, b, spec)
	e.deleteAtEnd("flow")
	e.must("create", "--bundle", b, "flow")
	e.must("start", "flow")

	// An exec writes; a pause writes it back.
	out := e.must("exec", "flow", "sh", "-c", writeScript(guest, 16, 200))
	want := md5FromOutput(t, out)
	e.must("pause", "flow")
	if got := md5File(t, filepath.Join(host, "big")); got != want {
		t.Errorf("paused: the host's copy has md5 %s, the container wrote %s", got, want)
	}
	checkSmallFiles(t, host, 200)
	e.must("resume", "flow")

	// The bind mount is coherent: a host write is seen at once, and a
	// guest write reaches the host at once.
	if err := os.WriteFile(filepath.Join(vol, "f"), []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := e.must("exec", "flow", "cat", "/vol/f"); out != "one\n" {
		t.Errorf("the container reads %q from the bind mount, want one", out)
	}
	if err := os.WriteFile(filepath.Join(vol, "f"), []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := e.must("exec", "flow", "sh", "-c", "cat /vol/f; echo three > /vol/g"); out != "two\n" {
		t.Errorf("after a host change the container reads %q from the bind mount, want two", out)
	}
	if b, err := os.ReadFile(filepath.Join(vol, "g")); err != nil || string(b) != "three\n" {
		t.Errorf("the host reads %q, %v from the bind mount, want three", b, err)
	}

	// Written just before a kill: on the host once the container is
	// stopped.
	e.must("exec", "flow", "sh", "-c", fmt.Sprintf("dd if=/dev/zero bs=1M count=8 2>/dev/null | tr '\\0' x > %s/last; echo end >> %s/last", guest, guest))
	e.must("kill", "flow", "KILL")
	e.waitStatus("flow", "stopped", 30*time.Second)
	b2, err := os.ReadFile(filepath.Join(host, "last"))
	if err != nil || len(b2) != 8<<20+4 || !strings.HasSuffix(string(b2), "xend\n") {
		t.Errorf("after kill the host has %d bytes of last (%v), want %d", len(b2), err, 8<<20+4)
	}
	e.must("delete", "flow")
}

// TestRootfsCacheLooseDeleteForce: delete --force of a running container
// writes its rootfs back before its VM stops.
func TestRootfsCacheLooseDeleteForce(t *testing.T) {
	e := newEnv(t, rootfsCacheLoose)
	host, guest := uniqueDataDir(t)
	b, _ := e.bundle("sleep", "1000")
	e.deleteAtEnd("force")
	e.must("run", "-d", "--bundle", b, "force")
	out := e.must("exec", "force", "sh", "-c", writeScript(guest, 16, 300))
	want := md5FromOutput(t, out)
	e.must("delete", "--force", "force")
	if got := md5File(t, filepath.Join(host, "big")); got != want {
		t.Errorf("the host's copy has md5 %s, the container wrote %s", got, want)
	}
	checkSmallFiles(t, host, 300)
}

// TestRootfsCacheLooseHostChanges records what a write-back rootfs shows of
// changes the host makes while the container runs (docker cp into it):
// docs/io.md describes it. A new name the guest never looked up is found;
// a file the guest has read keeps the content it cached.
func TestRootfsCacheLooseHostChanges(t *testing.T) {
	e := newEnv(t, rootfsCacheLoose)
	host, guest := uniqueDataDir(t)
	if err := os.MkdirAll(host, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "old"), []byte("before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := e.bundle("sleep", "1000")
	e.deleteAtEnd("cp")
	e.must("run", "-d", "--bundle", b, "cp")
	if out := e.must("exec", "cp", "cat", guest+"/old"); out != "before\n" {
		t.Fatalf("the container reads %q", out)
	}
	// docker cp writes a new file through a temporary name and renames it.
	os.WriteFile(filepath.Join(host, "new"), []byte("new\n"), 0o644)
	os.WriteFile(filepath.Join(host, ".tmp"), []byte("after!\n"), 0o644)
	os.Rename(filepath.Join(host, ".tmp"), filepath.Join(host, "old"))
	if out := e.must("exec", "cp", "cat", guest+"/new"); out != "new\n" {
		t.Errorf("a file new on the host reads %q in the container, want new", out)
	}
	r := e.run("", "exec", "cp", "cat", guest+"/old")
	t.Logf("a file the host replaced while the container ran reads %q (exit %d) in the container; the host wrote %q", r.stdout, r.code, "after!\n")
	e.must("delete", "--force", "cp")
}
