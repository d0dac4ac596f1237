package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const ioFileMiB = 256

// stampFn prints the container's wall clock with microseconds (busybox's
// date has no %N; adjtimex reads the clock without privilege). Under TCG
// the guest clock runs off the host's TSC, so it keeps real time.
const stampFn = `st() { adjtimex | awk '/tv_sec/{s=$2} /tv_usec/{u=$2} END{print "STAMP", s, u}'; }; `

// parseStamps returns the time between the first two STAMP lines.
func parseStamps(out string) (time.Duration, error) {
	var ts []time.Time
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "STAMP" {
			continue
		}
		s, err1 := strconv.ParseInt(f[1], 10, 64)
		u, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("bad stamp %q", sc.Text())
		}
		ts = append(ts, time.Unix(s, u*1000))
	}
	if len(ts) != 2 {
		return 0, fmt.Errorf("want 2 stamps in the output, got %d: %q", len(ts), out)
	}
	return ts[1].Sub(ts[0]), nil
}

// ioPlace is where a test's files live: inside the container and on the host.
type ioPlace struct {
	key       string // rootfs or bind
	name      string
	container string
	host      string
}

// benchIO: goal 4, sequential write and read of a 256 MiB file and an untar
// of many small files, on the 9p-shared rootfs and on a bind mount, against
// runc on the same files. Times are taken inside the container around the
// operation alone. Before a read, the file is dropped from the host's page
// cache (dd iflag=nocache on that file only) and, in kabuto's guest, the
// guest's caches are dropped as well.
func (b *bench) benchIO() {
	bundle := filepath.Join(b.work, "io")
	vol := filepath.Join(b.work, "io-vol")
	check(os.MkdirAll(vol, 0o755))
	check(makeBundle(bundle, bundleOpts{args: []string{"sleep", "100000"}, sysAdmin: true, binds: map[string]string{vol: "/vol"}}))
	places := []ioPlace{
		{"rootfs", "9p rootfs", "/data", filepath.Join(bundle, "rootfs", "data")},
		{"bind", "bind mount", "/vol", vol},
	}
	tarball, err := makeSmallFilesTar(b.work, b.untarFiles)
	check(err)
	for _, p := range places {
		check(copyFile(tarball, filepath.Join(p.host, "small.tar")))
	}
	rts := []*ociRuntime{b.kabuto}
	if b.runc != nil {
		rts = append(rts, b.runc)
	}
	const id = "io"
	for _, rt := range rts {
		check(rt.start(bundle, id))
		defer rt.remove(id)
	}

	run := func(rt *ociRuntime, script string) (time.Duration, error) {
		out, err := rt.exec(id, "sh", "-ec", stampFn+script)
		if err != nil {
			return 0, err
		}
		return parseStamps(out)
	}
	write := func(rt *ociRuntime, p ioPlace) (time.Duration, error) {
		f := p.container + "/f-" + rt.name
		return run(rt, fmt.Sprintf("rm -f %s; st; dd if=/dev/zero of=%s bs=1M count=%d conv=fsync 2>/dev/null; st", f, f, ioFileMiB))
	}
	read := func(rt *ociRuntime, p ioPlace) (time.Duration, error) {
		if err := dropHostCache(filepath.Join(p.host, "f-"+rt.name)); err != nil {
			return 0, err
		}
		drop := ""
		if rt == b.kabuto {
			drop = "echo 3 > /proc/sys/vm/drop_caches; "
		}
		f := p.container + "/f-" + rt.name
		return run(rt, fmt.Sprintf("%sst; dd if=%s of=/dev/null bs=1M 2>/dev/null; st", drop, f))
	}
	n := 0
	untar := func(rt *ociRuntime, p ioPlace) (time.Duration, error) {
		n++
		dir := fmt.Sprintf("x-%s-%d", rt.name, n)
		d, err := run(rt, fmt.Sprintf("st; mkdir %s/%s; tar -xf %s/small.tar -C %s/%s; st", p.container, dir, p.container, p.container, dir))
		// Removed on the host: an rm -rf over 9p would cost as much again.
		os.RemoveAll(filepath.Join(p.host, dir))
		return d, err
	}

	type op struct {
		name   string
		f      func(*ociRuntime, ioPlace) (time.Duration, error)
		warmUp bool
		rate   bool
	}
	ops := []op{
		{fmt.Sprintf("sequential write %d MiB (dd bs=1M conv=fsync)", ioFileMiB), write, true, true},
		{fmt.Sprintf("sequential read %d MiB, caches dropped (dd bs=1M)", ioFileMiB), read, true, true},
		{fmt.Sprintf("untar %d small files (1 KiB, %d dirs)", b.untarFiles, (b.untarFiles+99)/100), untar, false, false},
	}
	for _, o := range ops {
		for _, p := range places {
			if !o.rate && !b.untarOn[p.key] {
				continue
			}
			res := make([]durations, len(rts))
			if o.warmUp {
				for _, rt := range rts {
					_, err := o.f(rt, p)
					check(err)
				}
			}
			for i := 0; i < b.ioRuns; i++ {
				for j, rt := range rts {
					d, err := o.f(rt, p)
					check(err)
					res[j] = append(res[j], d)
				}
			}
			k := res[0]
			what := o.name + " on the " + p.name
			kFig := k.spread()
			if o.rate {
				kFig += fmt.Sprintf(" (%.0f MB/s)", rateMBs(k.median()))
			}
			ref, rat := "", ""
			if len(rts) > 1 {
				r := res[1]
				ref = "runc " + r.spread()
				if o.rate {
					ref += fmt.Sprintf(" (%.0f MB/s)", rateMBs(r.median()))
				}
				rat = fmtRatio(ratio(k.median(), r.median()))
			}
			fmt.Printf("   %s: kabuto %s, %s\n", what, kFig, ref)
			b.rep.add(row{"4", what, kFig, ref, rat, "—", ""})
		}
	}
}

func rateMBs(d time.Duration) float64 {
	return float64(ioFileMiB) * (1 << 20) / 1e6 / d.Seconds()
}

// dropHostCache drops one file's pages from the host's page cache
// (posix_fadvise DONTNEED through GNU dd), leaving other users' caches alone.
func dropHostCache(path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dd", "if="+path, "iflag=nocache", "count=0", "status=none").CombinedOutput()
	if err != nil {
		return fmt.Errorf("drop host cache of %s: %v: %s", path, err, out)
	}
	return nil
}

// makeSmallFilesTar writes n files of 1 KiB, 100 per directory, and tars
// them.
func makeSmallFilesTar(work string, n int) (string, error) {
	src := filepath.Join(work, "small")
	buf := make([]byte, 1024)
	for i := 0; i < n; i++ {
		dir := filepath.Join(src, fmt.Sprintf("d%03d", i/100))
		if i%100 == 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return "", err
			}
		}
		for j := range buf {
			buf[j] = byte(i + j)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i%100)), buf, 0o644); err != nil {
			return "", err
		}
	}
	tarball := filepath.Join(work, "small.tar")
	if out, err := exec.Command("tar", "-C", src, "-cf", tarball, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("tar: %v: %s", err, out)
	}
	return tarball, os.RemoveAll(src)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
