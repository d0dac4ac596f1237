package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// memoryGoalMiB is goal 2: host PSS of QEMU + shim for an idle container.
const memoryGoalMiB = 48

// execGoal is goal 3: kabuto exec within this factor of runc exec.
const execGoal = 3.0

// benchMemoryExec: goal 2 (memory of an idle busybox container after it
// settles, against a bare VM of the same guest) and goal 3 (exec latency
// into it, against runc exec).
func (b *bench) benchMemoryExec() {
	hc := b.cfg.Hypervisor
	// The floor: the same VM with nothing in it.
	vm, err := startBareVM(b.work, b.cfg)
	check(err)
	bare, bareSettled, err := settle(10*time.Second, time.Minute, func() []int { return []int{vm.pid} })
	if err != nil {
		vm.stop()
		fatal(err.Error())
	}
	bareParts, err := qemuBreakdown(vm.pid, hc.MemoryMiB, hc.Kernel, hc.Initrd)
	vm.stop()
	check(err)

	const id = "mem"
	check(b.kabuto.start(b.sleepBundle, id))
	defer b.kabuto.remove(id)
	shimPid, qemuPid, err := kabutoPids(b.kabuto.root, id)
	check(err)
	total, settled, err := settle(10*time.Second, time.Minute, func() []int { return []int{qemuPid, shimPid} })
	check(err)
	qemuMem, err := pidMem(qemuPid)
	check(err)
	shimMem, err := pidMem(shimPid)
	check(err)
	parts, err := qemuBreakdown(qemuPid, hc.MemoryMiB, hc.Kernel, hc.Initrd)
	check(err)
	out, err := b.kabuto.exec(id, "cat", "/proc/meminfo")
	check(err)
	guest := meminfo(out)
	b.singlePss = total.Pss

	note := ""
	if !settled || !bareSettled {
		note = " (not settled after 60 s)"
	}
	fmt.Printf("   idle container PSS %s (QEMU %s, shim %s), RSS %s; bare VM PSS %s%s\n",
		mib(total.Pss), mib(qemuMem.Pss), mib(shimMem.Pss), mib(total.Rss), mib(bare.Pss), note)
	met := "no"
	if total.Pss <= memoryGoalMiB*1024 {
		met = "yes"
	}
	b.rep.add(row{"2", "host PSS of an idle busybox container (QEMU + shim), settled" + note,
		fmt.Sprintf("%s (QEMU %s + shim %s)", mib(total.Pss), mib(qemuMem.Pss), mib(shimMem.Pss)),
		"bare VM (QEMU) " + mib(bare.Pss), fmtRatio(float64(total.Pss) / float64(bare.Pss)),
		fmt.Sprintf("≤ %d MiB", memoryGoalMiB), met})
	b.rep.add(row{"2", "host RSS (QEMU + shim)", mib(total.Rss), "bare VM " + mib(bare.Rss),
		fmtRatio(float64(total.Rss) / float64(bare.Rss)), "—", ""})
	guestUsed := guest["MemTotal"] - guest["MemAvailable"]
	b.rep.add(row{"2", "guest view: MemTotal − MemAvailable (free inside)",
		fmt.Sprintf("%s of %s", mib(guestUsed), mib(guest["MemTotal"])), "", "", "—", ""})

	var runcPss int64
	if b.runc != nil {
		check(b.runc.start(b.sleepBundle, id))
		defer b.runc.remove(id)
		pid, err := b.runc.statePid(id)
		check(err)
		m, err := pidMem(pid)
		check(err)
		runcPss = m.Pss
		b.rep.add(row{"2", "host PSS of the idle container", mib(total.Pss), "runc (the container's sleep) " + mib(m.Pss),
			fmtRatio(float64(total.Pss) / float64(m.Pss)), "—", ""})
	}

	parts2 := func(p qemuParts) []int64 {
		return []int64{p.GuestRAM, p.TCGCache, p.KernelInitrd, p.QEMUFiles, p.Other}
	}
	names := []string{
		fmt.Sprintf("guest RAM (touched part of the %d MiB%s)", hc.MemoryMiB, thpNote(hc.TransparentHugepages)),
		"TCG translation cache (" + tbSize(hc.TBSizeMiB) + ")",
		"kernel and initrd files mapped by QEMU (shared between VMs)",
		"QEMU binary and libraries (shared between VMs)",
		"QEMU heap, stacks, device state",
	}
	var rows [][]string
	for i, v := range parts2(parts) {
		rows = append(rows, []string{names[i], mib(v), mib(parts2(bareParts)[i])})
	}
	rows = append(rows,
		[]string{"shim (kabuto shim)", mib(shimMem.Pss), "—"},
		[]string{"**total PSS**", "**" + mib(total.Pss) + "**", "**" + mib(bare.Pss) + "**"},
		[]string{"RSS", mib(total.Rss), mib(bare.Rss)},
	)
	body := fmt.Sprintf("PSS from `/proc/<pid>/smaps` of QEMU and the shim of one idle container (`sleep`), " +
		"sampled every second until it moved less than 1 %% over 4 s; the bare VM is the same guest booted to its " +
		"agent with nothing else. File-backed pages are shared with every QEMU on the machine that maps the same " +
		"file, so their PSS falls as containers are added (see density).\n\n")
	body += mdTable([]string{"QEMU mapping", "container", "bare VM"}, rows)
	body += fmt.Sprintf("\nThe guest's own view (`/proc/meminfo` in the container): MemTotal %s, MemFree %s, "+
		"MemAvailable %s, Cached %s (of which Shmem %s), AnonPages %s, Slab %s.\n",
		mib(guest["MemTotal"]), mib(guest["MemFree"]), mib(guest["MemAvailable"]), mib(guest["Cached"]),
		mib(guest["Shmem"]), mib(guest["AnonPages"]), mib(guest["Slab"]))
	if runcPss > 0 {
		body += fmt.Sprintf("\nThe same container under runc: %s PSS.\n", mib(runcPss))
	}
	b.rep.detail("Memory of an idle container", body)

	// Goal 3: exec latency into the running container.
	fs := []func() error{func() error { _, err := b.kabuto.exec(id, "/bin/true"); return err }}
	if b.runc != nil {
		fs = append(fs, func() error { _, err := b.runc.exec(id, "/bin/true"); return err })
	}
	ds, err := interleaved(b.runs, fs...)
	check(err)
	b.aloneExec = ds[0]
	if b.runc == nil {
		b.rep.add(row{"3", "`kabuto exec` /bin/true into a running container", ds[0].spread(), "", "", fmt.Sprintf("≤ %.0f× runc", execGoal), ""})
		return
	}
	r := ratio(ds[0].median(), ds[1].median())
	fmt.Printf("   exec: kabuto %s, runc %s\n", ds[0].spread(), ds[1].spread())
	met = "no"
	if r <= execGoal {
		met = "yes"
	}
	b.rep.add(row{"3", "`exec` /bin/true into a running container", ds[0].spread(), "`runc exec` " + ds[1].spread(),
		fmtRatio(r), fmt.Sprintf("≤ %.0f×", execGoal), met})
	// The floor under any verb: the CLI's own start-up and a state read.
	st, err := interleaved(b.runs,
		func() error { _, err := b.kabuto.cmd(time.Minute, "state", id); return err },
		func() error { _, err := b.runc.cmd(time.Minute, "state", id); return err })
	check(err)
	b.rep.add(row{"3", "`state` of the running container (CLI start-up floor of every verb)", st[0].spread(),
		"`runc state` " + st[1].spread(), fmtRatio(ratio(st[0].median(), st[1].median())), "—", ""})
}

// thpNote says when the host backs QEMU's RAM with transparent huge pages
// (QEMU asks for them, and kabuto lets it with transparent_hugepages): then
// guest RAM is touched in 2 MiB units.
func thpNote(allowed bool) string {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(b), "[never]") {
		return ""
	}
	if !allowed {
		return "; host THP off for QEMU: 4 KiB units"
	}
	return "; host THP: 2 MiB units"
}
