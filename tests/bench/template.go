package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// benchTemplate: goal 3, `kabuto run` of /bin/true in a VM restored from a
// template (VM templating, docs/templating.md) against the same run in a
// booted VM and runc. The first run makes the template (a boot and a
// snapshot, once per VM shape); the timed runs restore it.
func (b *bench) benchTemplate() {
	conf, err := os.ReadFile(b.confPath)
	check(err)
	tconf := filepath.Join(b.work, "kabuto-template.toml")
	conf = append(conf, fmt.Sprintf("[factory]\nenable_template = true\ntemplate_path = %q\n", filepath.Join(b.work, "templates"))...)
	check(os.WriteFile(tconf, conf, 0o644))
	k := newRuntime("kabuto (templated)", b.kabuto.bin, filepath.Join(b.work, "ktroot"), "--config", tconf)
	destroy := func() {
		k.cleanup()
		k.cmd(time.Minute, "template", "destroy")
	}
	cleanups = append([]func(){destroy}, cleanups...)
	defer destroy()
	t0 := time.Now()
	check(k.runOnce(b.trueBundle, "tmake"))
	made := time.Since(t0)
	n := 0
	fs := []func() error{
		func() error {
			n++
			return k.runOnce(b.trueBundle, fmt.Sprintf("tpl%d", n))
		},
		func() error {
			n++
			return b.kabuto.runOnce(b.trueBundle, fmt.Sprintf("boot%d", n))
		},
	}
	if b.runc != nil {
		fs = append(fs, func() error {
			n++
			return b.runc.runOnce(b.trueBundle, fmt.Sprintf("runc%d", n))
		})
	}
	ds, err := interleaved(b.runs, fs...)
	check(err)
	tpl, booted := ds[0], ds[1]
	fmt.Printf("   templated run %s, booted %s, template made in %.0f ms\n", tpl.spread(), booted.spread(), float64(made.Microseconds())/1000)
	b.rep.add(row{"3", "`kabuto run` /bin/true in a VM restored from a template (`factory.enable_template`)", tpl.spread(),
		"booted `kabuto run` " + booted.spread(), fmtRatio(ratio(tpl.median(), booted.median())), "—", ""})
	b.rep.add(row{"3", "the template itself: first run (boot, snapshot, then the run), once per VM shape", fmt.Sprintf("%.0f ms", float64(made.Microseconds())/1000),
		"", "", "—", ""})
	if b.runc != nil {
		b.rep.add(row{"3", "`kabuto run` /bin/true, templated", tpl.spread(), "`runc run` " + ds[2].spread(),
			fmtRatio(ratio(tpl.median(), ds[2].median())), "— (docker run ≤ 1.5× runc: see below)", ""})
	}
}
