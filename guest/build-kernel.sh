#!/usr/bin/env bash
# Builds kabuto's guest kernel from Debian's linux-source-6.1 with the config
# fragment and patch in guest/kernel/, and caches the stripped, uncompressed
# PVH vmlinux outside the checkout, keyed by everything that shapes it. When
# the cache has it, this is a copy.
#
#   guest/build-kernel.sh OUT_VMLINUX
#
# Environment:
#   KABUTO_CACHE          cache root (default /var/cache/kabuto); the kernel
#                         lands in $KABUTO_CACHE/kernel/<key>/{vmlinux,config}
#   KABUTO_KERNEL_REBUILD=1  ignore (and replace) a cached build
#   KABUTO_KERNEL_JOBS    make -j (default: nproc)
#
# Needs (Debian 12): linux-source-6.1 flex bison bc libelf-dev libssl-dev
# build-essential cpio.
set -euo pipefail

log() { echo "build-kernel: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 1 ] || { echo "usage: $0 OUT_VMLINUX" >&2; exit 2; }
out=$1
self=$(readlink -f "${BASH_SOURCE[0]}")
here=$(dirname "$self")
frag=$here/kernel/kabuto.config
patchf=$here/kernel/lapic-timer-period.patch
tarball=/usr/src/linux-source-6.1.tar.xz
cache=${KABUTO_CACHE:-/var/cache/kabuto}
kcache=$cache/kernel

[ -f "$frag" ] || die "missing $frag"
[ -f "$patchf" ] || die "missing $patchf"
[ -f "$tarball" ] || die "missing $tarball (apt-get install linux-source-6.1)"
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null) ||
	die "linux-source-6.1 is not installed (dpkg-query)"
[ -n "$srcver" ] || die "cannot read the linux-source-6.1 version"

# The key covers the fragment, the patch, this script and the source version.
key=$( { sha256sum <"$frag"; sha256sum <"$patchf"; sha256sum <"$self"; echo "linux-source-6.1 $srcver"; } |
	sha256sum | cut -d' ' -f1)
dir=$kcache/$key

# install copies the cached kernel to OUT atomically (temp file + rename).
install_out() {
	local tmp
	tmp=$(mktemp "$(dirname "$out")/.vmlinux.XXXXXX")
	cp "$dir/vmlinux" "$tmp"
	chmod 0644 "$tmp"
	mv -f "$tmp" "$out"
	log "$out <- $dir/vmlinux"
}

mkdir -p "$kcache"
if [ "${KABUTO_KERNEL_REBUILD:-0}" != 1 ] && [ -f "$dir/vmlinux" ]; then
	log "cached (key $key)"
	install_out
	exit 0
fi

# One build at a time (they would fight over the cores anyway); a caller that
# waited for a build of the same key then finds it cached.
exec 9>"$kcache/.lock"
if ! flock -n 9; then
	log "another kernel build is running; waiting for it"
	flock 9
fi
if [ "${KABUTO_KERNEL_REBUILD:-0}" != 1 ] && [ -f "$dir/vmlinux" ]; then
	log "cached (key $key), built by another process"
	install_out
	exit 0
fi

for tool in make gcc ld strip readelf flex bison bc perl patch tar xz; do
	command -v "$tool" >/dev/null || die "missing build tool: $tool"
done

work=$(mktemp -d "$kcache/build.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
buildlog=$kcache/build-$key.log
: >"$buildlog"
src=$work/linux-source-6.1
jobs=${KABUTO_KERNEL_JOBS:-$(nproc)}
t0=$(date +%s)

fail() {
	log "error: $*; last lines of $buildlog:"
	tail -n 40 "$buildlog" >&2
	exit 1
}

log "building linux-source-6.1 $srcver, key $key"
log "build dir $work, log $buildlog"
log "unpacking $tarball"
tar -C "$work" -xf "$tarball"
[ -d "$src" ] || die "$tarball did not unpack to linux-source-6.1/"
log "applying $(basename "$patchf")"
patch -d "$src" -p1 --forward --batch --fuzz=0 <"$patchf" >>"$buildlog" 2>&1 || fail "patch failed"

export KBUILD_BUILD_USER=kabuto KBUILD_BUILD_HOST=kabuto
log "configuring: allnoconfig + $(basename "$frag")"
make -C "$src" KCONFIG_ALLCONFIG="$frag" allnoconfig >>"$buildlog" 2>&1 || fail "allnoconfig failed"

# Every assignment in the fragment must survive into .config; kconfig drops
# options whose dependencies are unmet without complaint.
missing=$(grep -E '^CONFIG_[A-Za-z0-9_]+=' "$frag" | while IFS= read -r line; do
	grep -qxF -- "$line" "$src/.config" || {
		sym=${line%%=*}
		got=$(grep -E "^($sym=|# $sym is not set)" "$src/.config" || echo "absent")
		echo "  $line   (got: $got)"
	}
done)
notset=$(sed -nE 's/^# (CONFIG_[A-Za-z0-9_]+) is not set.*/\1/p' "$frag" | while IFS= read -r sym; do
	grep -qE "^$sym=" "$src/.config" && echo "  # $sym is not set   (got: $(grep -E "^$sym=" "$src/.config"))"
done || true)
if [ -n "$missing$notset" ]; then
	log "error: these fragment lines did not survive into .config (unmet dependencies?):"
	printf '%s\n' "$missing$notset" >&2
	exit 1
fi
log "config OK: all $(grep -cE '^CONFIG_[A-Za-z0-9_]+=' "$frag") fragment options kept"

log "compiling vmlinux with -j$jobs (takes minutes; tail -f $buildlog)"
tc=$(date +%s)
make -C "$src" -j"$jobs" vmlinux >>"$buildlog" 2>&1 || fail "make vmlinux failed"
log "compiled in $(( $(date +%s) - tc )) s"

stage=$work/out
mkdir "$stage"
strip -o "$stage/vmlinux" "$src/vmlinux"
# QEMU boots the ELF directly through its PVH entry (Xen note type 0x12).
readelf -n "$stage/vmlinux" | grep -qiE 'Xen.*(0x0*12|PHYS32_ENTRY)' ||
	die "stripped vmlinux has no PVH entry note (CONFIG_PVH?)"
chmod 0644 "$stage/vmlinux"
cp "$src/.config" "$stage/config"
cp "$buildlog" "$stage/build.log"

# Publish atomically: rename the finished directory into place.
if [ -e "$dir" ]; then
	mv "$dir" "$work/old"
fi
mv -T "$stage" "$dir"
rm -f "$buildlog"
rm -rf "$work"
log "stored $dir/vmlinux ($(stat -c %s "$dir/vmlinux") bytes), total $(( $(date +%s) - t0 )) s"
install_out
