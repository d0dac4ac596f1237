#!/usr/bin/env bash
# VM templating benchmark (docs/templating.md): start latency and memory of
# containers whose VMs are restored from a template, against booted VMs and
# runc. Medians of RUNS timed runs after one warm-up.
#
#   KABUTO_BIN=... KABUTO_KERNEL=... KABUTO_INITRD=... tests/bench/template.sh
#
# Optional: RUNS (default 7), DENSITY (containers kept running for the
# memory figures, default 4), DOCKER_RUNTIMES="booted-name templated-name":
# two docker runtimes registered for this kabuto binary with --config files
# that leave templating off and on (`docker run --rm` is then measured too,
# against runc).
set -euo pipefail
: "${KABUTO_BIN:?set KABUTO_BIN}" "${KABUTO_KERNEL:?set KABUTO_KERNEL}" "${KABUTO_INITRD:?set KABUTO_INITRD}"
RUNS=${RUNS:-7}
DENSITY=${DENSITY:-4}
work=$(mktemp -d /tmp/kabuto-tbench-XXXXXX)
root=$work/root
templates=$work/templates

cleanup() {
	for id in $("$KABUTO_BIN" --root "$root" list -q 2>/dev/null); do
		"$KABUTO_BIN" --root "$root" --config "$work/on.toml" delete -f "$id" >/dev/null 2>&1 || true
	done
	"$KABUTO_BIN" --root "$root" --config "$work/on.toml" template destroy >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

for mode in on off; do
	enable=false
	[ $mode = on ] && enable=true
	cat > "$work/$mode.toml" <<EOF
[hypervisor]
kernel = "$KABUTO_KERNEL"
initrd = "$KABUTO_INITRD"
[factory]
enable_template = $enable
template_path = "$templates"
EOF
done

# A busybox bundle.
bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs"/{proc,sys,dev,tmp,etc}
cp /bin/busybox "$bundle/rootfs/bin/"
for a in sh true sleep; do ln -s busybox "$bundle/rootfs/bin/$a"; done
(cd "$bundle" && "$KABUTO_BIN" spec)
setargs() {
	python3 - "$bundle/config.json" "$@" <<'EOF'
import json, sys
p = sys.argv[1]
s = json.load(open(p))
s["process"]["terminal"] = False
s["process"]["args"] = sys.argv[2:]
json.dump(s, open(p, "w"))
EOF
}
setargs /bin/true

now_ms() { echo $(($(date +%s%N) / 1000000)); }
n=0
# measure NAME CMD...: one warm-up, RUNS timed runs; prints the median.
measure() {
	local name=$1
	shift
	local ts=()
	for i in $(seq 0 "$RUNS"); do
		n=$((n + 1))
		local s e
		s=$(now_ms)
		if ! "$@" "x$n" > /dev/null; then
			echo "bench: $name failed" >&2
			exit 1
		fi
		e=$(now_ms)
		[ "$i" -gt 0 ] && ts+=($((e - s)))
	done
	local sorted
	sorted=($(printf '%s\n' "${ts[@]}" | sort -n))
	local med=${sorted[$((${#sorted[@]} / 2))]}
	printf '%-40s %6d ms [%d–%d]\n' "$name" "$med" "${sorted[0]}" "${sorted[-1]}" >&2
	echo "$med"
}

kabuto_on() { "$KABUTO_BIN" --root "$root" --config "$work/on.toml" run --bundle "$bundle" "$1"; }
kabuto_off() { "$KABUTO_BIN" --root "$root" --config "$work/off.toml" run --bundle "$bundle" "$1"; }
runc_run() { runc --root "$work/runc" run --bundle "$bundle" "$1"; }

echo "templating bench: $RUNS runs each (median [min–max]), load $(cut -d' ' -f1 /proc/loadavg)" >&2
s=$(now_ms)
"$KABUTO_BIN" --root "$root" --config "$work/on.toml" template create > /dev/null
printf '%-40s %6d ms\n' "template create (boot + snapshot)" $(($(now_ms) - s)) >&2
on=$(measure "kabuto run /bin/true, templated" kabuto_on)
off=$(measure "kabuto run /bin/true, booted" kabuto_off)
runc_ms=0
if command -v runc > /dev/null; then
	runc_ms=$(measure "runc run /bin/true" runc_run)
fi
awk -v a="$on" -v b="$off" 'BEGIN { printf "%-40s %6.2fx\n", "templated / booted", a / b }' >&2
if [ "$runc_ms" -gt 0 ]; then
	awk -v a="$on" -v b="$off" -v r="$runc_ms" 'BEGIN { printf "%-40s %6.1fx / %.1fx\n", "templated / runc, booted / runc", a / r, b / r }' >&2
fi

if [ -n "${DOCKER_RUNTIMES:-}" ] && command -v docker > /dev/null; then
	read -r booted templated <<< "$DOCKER_RUNTIMES"
	image=${DOCKER_IMAGE:-kabuto-bb:latest}
	drun() { docker run --rm --runtime "$1" "$image" true; }
	d_runc() { drun runc; }
	d_booted() { drun "$booted"; }
	d_templated() { drun "$templated"; }
	dr=$(measure "docker run --rm, runc" d_runc)
	db=$(measure "docker run --rm, kabuto booted" d_booted)
	dt=$(measure "docker run --rm, kabuto templated" d_templated)
	awk -v t="$dt" -v b="$db" -v r="$dr" 'BEGIN { printf "%-40s %6.2fx / %.2fx\n", "docker: templated / runc, booted / runc", t / r, b / r }' >&2
fi

# Memory: DENSITY idle containers per mode; PSS of their QEMUs and shims
# (PSS divides shared pages among their users: the template's pages).
pss_kib() {
	local sum=0 p v
	for p in "$@"; do
		v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2> /dev/null || echo 0)
		sum=$((sum + ${v:-0}))
	done
	echo $sum
}
setargs /bin/sleep 600
for mode in on off; do
	ids=()
	for i in $(seq 1 "$DENSITY"); do
		id=mem-$mode-$i
		"$KABUTO_BIN" --root "$root" --config "$work/$mode.toml" run -d --bundle "$bundle" "$id" > /dev/null < /dev/null
		ids+=("$id")
	done
	sleep 3
	pids=()
	for id in "${ids[@]}"; do
		pids+=($(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["qemu"]["pid"], s["shim"]["pid"])' "$root/$id/state.json"))
	done
	total=$(pss_kib "${pids[@]}")
	printf '%-40s %6.1f MiB per container (%d containers, QEMU + shim PSS)\n' "memory, $([ $mode = on ] && echo templated || echo booted)" \
		"$(awk -v t="$total" -v n="$DENSITY" 'BEGIN { print t / n / 1024 }')" "$DENSITY" >&2
	for id in "${ids[@]}"; do
		"$KABUTO_BIN" --root "$root" --config "$work/$mode.toml" delete -f "$id" > /dev/null
	done
done
held=$(du -sk "$templates" 2> /dev/null | cut -f1)
printf '%-40s %6.1f MiB (the template RAM file, once for all clones)\n' "template memory held" "$(awk -v k="${held:-0}" 'BEGIN { print k / 1024 }')" >&2
