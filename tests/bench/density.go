package main

import (
	"fmt"
	"time"
)

// densityReserveKiB is host memory the density test leaves available for
// everyone else on the machine: it stops adding containers before that.
const densityReserveKiB = 4 << 20

// benchDensity: goal 5, N idle containers started b.batch at a time: the
// create time of each batch (is it linear?), per-container PSS and host
// memory with all of them running, and exec latency with N running
// against one container alone.
func (b *bench) benchDensity() {
	if len(b.aloneExec) == 0 {
		const id = "alone"
		check(b.kabuto.start(b.sleepBundle, id))
		ds, err := interleaved(b.runs, func() error { _, err := b.kabuto.exec(id, "/bin/true"); return err })
		check(err)
		b.aloneExec = ds[0]
		check(b.kabuto.remove(id))
	}
	estimate := b.singlePss
	if estimate == 0 {
		estimate = 200 << 10
	}
	usedBefore, err := hostMemUsed()
	check(err)
	type batch struct {
		before int
		n      int
		d      time.Duration
	}
	var batches []batch
	var ids []string
	defer func() {
		parallel(len(ids), 4, func(i int) error { return b.kabuto.remove(ids[i]) })
	}()
	stopped := ""
	for len(ids) < b.density {
		k := min(b.batch, b.density-len(ids))
		if avail := hostMemAvailable(); avail-int64(k)*estimate*3/2 < densityReserveKiB {
			stopped = fmt.Sprintf("stopped at %d of %d containers: host MemAvailable %s would fall below the %s reserve",
				len(ids), b.density, mib(avail), mib(densityReserveKiB))
			fmt.Println("  ", stopped)
			break
		}
		var batchIDs []string
		for i := 0; i < k; i++ {
			batchIDs = append(batchIDs, fmt.Sprintf("d%d", len(ids)+i))
		}
		t := time.Now()
		err := parallel(k, k, func(i int) error { return b.kabuto.start(b.sleepBundle, batchIDs[i]) })
		d := time.Since(t)
		ids = append(ids, batchIDs...)
		check(err)
		batches = append(batches, batch{len(ids) - k, k, d})
	}
	if len(ids) == 0 {
		b.rep.skip("density: %s", stopped)
		return
	}
	pids := func() []int {
		var ps []int
		for _, id := range ids {
			s, q, err := kabutoPids(b.kabuto.root, id)
			check(err)
			ps = append(ps, s, q)
		}
		return ps
	}
	total, settled, err := settle(10*time.Second, 2*time.Minute, pids)
	check(err)
	usedAfter, err := hostMemUsed()
	check(err)
	ds, err := interleaved(b.runs, func() error { _, err := b.kabuto.exec(ids[0], "/bin/true"); return err })
	check(err)
	execN := ds[0]

	n := len(ids)
	note := ""
	if !settled {
		note = " (not settled after 2 min)"
	}
	per := total.Pss / int64(n)
	fmt.Printf("   %d containers: PSS %s each, host memory used +%s, exec %s (alone %s)\n",
		n, mib(per), mib(usedAfter-usedBefore), execN.spread(), b.aloneExec.spread())
	ref := ""
	rat := ""
	if b.singlePss > 0 {
		ref = "one container alone " + mib(b.singlePss)
		rat = fmtRatio(float64(per) / float64(b.singlePss))
	}
	b.rep.add(row{"5", fmt.Sprintf("PSS per container with %d idle containers (QEMU + shim)%s", n, note), mib(per), ref, rat, "—", ""})
	b.rep.add(row{"5", fmt.Sprintf("host memory used by %d containers (MemTotal − MemAvailable, before → after)", n),
		fmt.Sprintf("%s (%s each)", mib(usedAfter-usedBefore), mib((usedAfter-usedBefore)/int64(n))), "", "", "—", ""})
	first, last := batches[0], batches[len(batches)-1]
	if len(batches) > 1 {
		b.rep.add(row{"5", fmt.Sprintf("create+start of a batch of %d (%d running → last batch)", b.batch, last.before),
			ms(last.d), fmt.Sprintf("first batch (0 running) %s", ms(first.d)), fmtRatio(ratio(last.d, first.d)), "— (linear: ≈1×)", ""})
	}
	b.rep.add(row{"5", fmt.Sprintf("`kabuto exec` /bin/true with %d running", n), execN.spread(),
		"alone " + b.aloneExec.spread(), fmtRatio(ratio(execN.median(), b.aloneExec.median())), "—", ""})

	var rows [][]string
	for i, x := range batches {
		rows = append(rows, []string{fmt.Sprint(i + 1), fmt.Sprint(x.before), fmt.Sprint(x.n), ms(x.d), ms(x.d / time.Duration(x.n))})
	}
	body := fmt.Sprintf("%d idle `sleep` containers, started %d at a time (concurrent `kabuto run -d`), then "+
		"left to settle. Total PSS of every QEMU and shim %s (%s per container); host MemTotal − MemAvailable "+
		"grew by %s (other users of the machine add noise to this one).\n\n",
		n, b.batch, mib(total.Pss), mib(per), mib(usedAfter-usedBefore))
	if stopped != "" {
		body += stopped + ".\n\n"
	}
	body += mdTable([]string{"batch", "running before", "started", "wall time", "per container"}, rows)
	b.rep.detail(fmt.Sprintf("Density: %d containers", n), body)
}
