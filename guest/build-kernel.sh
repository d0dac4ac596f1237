#!/usr/bin/env bash
# Builds kabuto's guest kernel from Debian's linux-source-6.1 with the config
# fragment in guest/kernel/, and caches the stripped PVH vmlinux outside the
# checkout, keyed by everything that shapes it. A cached build is a copy.
#
#   guest/build-kernel.sh OUT_VMLINUX
#
# KABUTO_CACHE (default /var/cache/kabuto) holds kernel/<key>/vmlinux.
set -euo pipefail

out=${1:?usage: build-kernel.sh OUT_VMLINUX}
here=$(cd "$(dirname "$0")" && pwd)
frag=$here/kernel/kabuto.config
patchf=$here/kernel/lapic-timer-period.patch
tarball=/usr/src/linux-source-6.1.tar.xz
cache=${KABUTO_CACHE:-/var/cache/kabuto}

log() { echo "build-kernel: $*" >&2; }

[ -f "$tarball" ] || { log "missing $tarball: apt-get install linux-source-6.1"; exit 1; }
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
key=$( { cat "$frag" "$patchf" "$0"; echo "$srcver"; } | sha256sum | cut -c1-16)
dir=$cache/kernel/$key

if [ -f "$dir/vmlinux" ]; then
	log "cached: $dir/vmlinux"
	cp "$dir/vmlinux" "$out.tmp" && mv "$out.tmp" "$out"
	exit 0
fi

mkdir -p "$cache/kernel"
work=$(mktemp -d "$cache/kernel/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
buildlog=$cache/kernel/build-$key.log
log "building linux-source-6.1 $srcver (key $key) in $work; log: $buildlog"
tar -C "$work" -xf "$tarball"
src=$work/linux-source-6.1
patch -d "$src" -p1 -s < "$patchf"
jobs=$(nproc)
{
	make -C "$src" KCONFIG_ALLCONFIG="$frag" allnoconfig
} > "$buildlog" 2>&1 || { tail -30 "$buildlog"; exit 1; }

missing=$(grep -E '^CONFIG_[A-Z0-9_]+=' "$frag" | while IFS= read -r line; do
	grep -qxF "$line" "$src/.config" || echo "$line"
done)
if [ -n "$missing" ]; then
	log "these fragment lines did not survive into .config (missing dependencies?):"
	echo "$missing" >&2
	exit 1
fi

log "compiling with $jobs jobs"
start=$(date +%s)
make -C "$src" -j"$jobs" vmlinux >> "$buildlog" 2>&1 || { tail -40 "$buildlog"; exit 1; }
log "compiled in $(( $(date +%s) - start )) s"
strip -o "$work/vmlinux" "$src/vmlinux"
cp "$src/.config" "$work/config"
mkdir -p "$dir.tmp"
mv "$work/vmlinux" "$work/config" "$dir.tmp/"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
cp "$dir/vmlinux" "$out.tmp" && mv "$out.tmp" "$out"
log "done: $dir/vmlinux"
