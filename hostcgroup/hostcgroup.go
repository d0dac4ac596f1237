// Package hostcgroup puts a container's host processes (QEMU and the shims)
// into the cgroup its spec names (linux.cgroupsPath), on every mounted
// hierarchy, cgroup v1 and v2 alike. Callers that read a container's usage
// from the cgroup of its pid (containerd, conmon) then see the VM's usage.
// It runs on the host only.
package hostcgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/vmstate"
)

// Mount is one cgroup hierarchy mounted on the host.
type Mount struct {
	Dir string
	V2  bool
	// Controllers of a v1 hierarchy (from its super options).
	Controllers []string
}

// Mounts lists the cgroup hierarchies of this mount namespace.
func Mounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f)
}

func parseMountinfo(f io.Reader) ([]Mount, error) {
	var ms []Mount
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		dir := vmstate.UnescapeMountinfo(pf[4])
		if seen[dir] {
			continue
		}
		switch qf[0] {
		case "cgroup2":
			seen[dir] = true
			ms = append(ms, Mount{Dir: dir, V2: true})
		case "cgroup":
			seen[dir] = true
			var ctrls []string
			for _, o := range strings.Split(qf[2], ",") {
				switch o {
				case "rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "xattr", "clone_children", "nsdelegate":
				default:
					if !strings.Contains(o, "=") {
						ctrls = append(ctrls, o)
					} else if strings.HasPrefix(o, "name=") {
						ctrls = append(ctrls, o)
					}
				}
			}
			ms = append(ms, Mount{Dir: dir, Controllers: ctrls})
		}
	}
	return ms, sc.Err()
}

// ResolvePath turns a spec's cgroupsPath into a path below each hierarchy's
// root. systemd-style "slice:prefix:name" paths (--systemd-cgroup) become
// slice/prefix-name.scope, as the systemd driver names them.
func ResolvePath(cgroupsPath, id string, systemd bool) (string, error) {
	p := cgroupsPath
	if systemd || strings.Count(p, ":") == 2 && !strings.HasPrefix(p, "/") {
		parts := strings.Split(p, ":")
		if len(parts) != 3 {
			return "", fmt.Errorf("cgroupsPath %q is not slice:prefix:name", cgroupsPath)
		}
		slice, prefix, name := parts[0], parts[1], parts[2]
		if slice == "" {
			slice = "system.slice"
		}
		p = "/" + slice + "/" + prefix + "-" + name + ".scope"
	}
	if p == "" {
		p = "/kabuto/" + id
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	clean := filepath.Clean(p)
	if clean == "/" || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
		return "", fmt.Errorf("cgroupsPath %q escapes the cgroup hierarchy", cgroupsPath)
	}
	return clean, nil
}

// Join creates path on every hierarchy and moves pids into it. It returns
// the directories it created, deepest last, for Remove.
func Join(mounts []Mount, path string, pids ...int) ([]string, error) {
	var created []string
	for _, m := range mounts {
		dirs, err := mkdirAll(m, path)
		created = append(created, dirs...)
		if err != nil {
			return created, err
		}
		target := filepath.Join(m.Dir, path)
		for _, pid := range pids {
			if err := os.WriteFile(filepath.Join(target, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
				return created, fmt.Errorf("join cgroup %s: %w", target, err)
			}
		}
	}
	return created, nil
}

// mkdirAll creates path below m one level at a time so that v1 cpuset
// directories inherit their parent's cpus and mems (an empty cpuset accepts
// no task).
func mkdirAll(m Mount, path string) ([]string, error) {
	var created []string
	cur := m.Dir
	isCpuset := false
	for _, c := range m.Controllers {
		if c == "cpuset" {
			isCpuset = true
		}
	}
	for _, part := range strings.Split(strings.Trim(path, "/"), "/") {
		parent := cur
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return created, fmt.Errorf("create cgroup %s: %w", cur, err)
		}
		created = append(created, cur)
		if isCpuset {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
					os.WriteFile(filepath.Join(cur, f), b, 0)
				}
			}
		}
	}
	return created, nil
}

// Remove deletes the directories Join created, deepest first. A parent that
// another container's cgroup still uses stays; the container's own (deepest)
// directories must go.
func Remove(dirs []string) error {
	sorted := append([]string(nil), dirs...)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	var firstErr error
	isParent := func(d string) bool {
		for _, o := range sorted {
			if strings.HasPrefix(o, d+"/") {
				return true
			}
		}
		return false
	}
	// An exited process stays in its cgroup until it is reaped, and QEMU's
	// reaper is whoever our caller is: give it a moment, 2 s a dir as
	// before, but as one deadline for all the controllers' dirs, which wait
	// for the same reap (a slow reaper under load once outlasted 2 s per
	// dir: the first dirs stayed behind, the last went).
	deadline := time.Now().Add(time.Duration(len(sorted)) * 2 * time.Second)
	for _, d := range sorted {
		err := os.Remove(d)
		for errors.Is(err, unix.EBUSY) && !isParent(d) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			err = os.Remove(d)
		}
		if err == nil || errors.Is(err, os.ErrNotExist) {
			continue
		}
		shared := isParent(d) && (errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENOTEMPTY))
		if !shared && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}
