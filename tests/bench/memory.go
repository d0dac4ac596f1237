package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// memUse is one process's (or a sum of processes') memory, in KiB.
type memUse struct {
	Rss, Pss, PssAnon, PssFile int64
}

func (m memUse) add(o memUse) memUse {
	return memUse{m.Rss + o.Rss, m.Pss + o.Pss, m.PssAnon + o.PssAnon, m.PssFile + o.PssFile}
}

// parseRollup reads /proc/<pid>/smaps_rollup.
func parseRollup(r io.Reader) (memUse, error) {
	var m memUse
	seen := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			m.Rss, seen = v, seen+1
		case "Pss:":
			m.Pss, seen = v, seen+1
		case "Pss_Anon:":
			m.PssAnon = v
		case "Pss_File:":
			m.PssFile = v
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if seen < 2 {
		return m, fmt.Errorf("no Rss/Pss in smaps_rollup")
	}
	return m, nil
}

func pidMem(pid int) (memUse, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return memUse{}, err
	}
	defer f.Close()
	return parseRollup(f)
}

func pidsMem(pids ...int) (memUse, error) {
	var sum memUse
	for _, p := range pids {
		m, err := pidMem(p)
		if err != nil {
			return sum, err
		}
		sum = sum.add(m)
	}
	return sum, nil
}

// settle samples the PSS of pids every second until it moved less than 1 %
// over the last 4 s (at least minWait, at most maxWait). It returns the last
// sample and whether it settled.
func settle(minWait, maxWait time.Duration, pids func() []int) (memUse, bool, error) {
	start := time.Now()
	var window []int64
	for {
		m, err := pidsMem(pids()...)
		if err != nil {
			return m, false, err
		}
		window = append(window, m.Pss)
		if len(window) > 5 {
			window = window[1:]
		}
		if time.Since(start) >= minWait && len(window) == 5 {
			lo, hi := window[0], window[0]
			for _, v := range window {
				lo, hi = min(lo, v), max(hi, v)
			}
			if float64(hi-lo) <= 0.01*float64(hi) {
				return m, true, nil
			}
		}
		if time.Since(start) >= maxWait {
			return m, false, nil
		}
		time.Sleep(time.Second)
	}
}

// qemuParts splits a QEMU process's PSS by what its mappings hold.
type qemuParts struct {
	GuestRAM, TCGCache, KernelInitrd, QEMUFiles, Other int64 // PSS, KiB
}

// parseQEMUSmaps classifies the mappings of /proc/<qemu>/smaps: guest RAM is
// the anonymous mapping of exactly the VM's memory size, the TCG code cache
// the anonymous rwx one, then the mapped kernel and initrd files, QEMU's
// binary and libraries, and the rest (heap, stacks, device state).
func parseQEMUSmaps(r io.Reader, guestMiB int, kernel, initrd string) (qemuParts, error) {
	var p qemuParts
	var cur *int64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4 {
			lo, hi, ok := strings.Cut(f[0], "-")
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			if !ok || err1 != nil || err2 != nil {
				continue
			}
			size := b - a
			path := ""
			if len(f) >= 6 {
				path = strings.Join(f[5:], " ")
			}
			switch {
			case path == "" && size == uint64(guestMiB)<<20:
				cur = &p.GuestRAM
			case path == "" && f[1] == "rwxp":
				cur = &p.TCGCache
			case path != "" && (path == kernel || path == initrd):
				cur = &p.KernelInitrd
			case strings.HasPrefix(path, "/"):
				cur = &p.QEMUFiles
			default:
				cur = &p.Other
			}
			continue
		}
		if len(f) >= 2 && f[0] == "Pss:" && cur != nil {
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err == nil {
				*cur += v
			}
		}
	}
	return p, sc.Err()
}

func qemuBreakdown(pid, guestMiB int, kernel, initrd string) (qemuParts, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return qemuParts{}, err
	}
	defer f.Close()
	return parseQEMUSmaps(f, guestMiB, kernel, initrd)
}

// meminfo parses /proc/meminfo-format text into KiB values.
func meminfo(text string) map[string]int64 {
	m := map[string]int64{}
	for _, l := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			m[k] = n
		}
	}
	return m
}

// hostMemUsed is MemTotal - MemAvailable of the host, KiB.
func hostMemUsed() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	m := meminfo(string(b))
	if m["MemTotal"] == 0 {
		return 0, fmt.Errorf("no MemTotal in /proc/meminfo")
	}
	return m["MemTotal"] - m["MemAvailable"], nil
}

func hostMemAvailable() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	return meminfo(string(b))["MemAvailable"]
}
