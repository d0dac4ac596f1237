#!/usr/bin/env bash
# Packs kabuto-agent into the guest initramfs (an uncompressed newc cpio:
# the kernel unpacks it faster than it would decompress it under TCG).
#
#   guest/build-initrd.sh AGENT_BINARY OUT
set -euo pipefail
agent=${1:?usage: build-initrd.sh AGENT_BINARY OUT}
out=${2:?usage: build-initrd.sh AGENT_BINARY OUT}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{dev,proc,sys,run,tmp,newroot}
install -m 0755 "$agent" "$root/init"
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --owner 0:0) > "$out.tmp"
mv "$out.tmp" "$out"
echo "build-initrd: $out ($(stat -c %s "$out") bytes)" >&2
