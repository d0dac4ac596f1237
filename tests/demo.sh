#!/usr/bin/env bash
# Runs a busybox container in its own VM with the installed kabuto: makes an
# OCI bundle around busybox-static, then `kabuto run`s it.
set -euo pipefail
kabuto=${KABUTO:-kabuto}
bundle=$(mktemp -d /tmp/kabuto-demo.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
mkdir -p "$bundle/rootfs/bin" "$bundle"/rootfs/{proc,sys,dev,etc,tmp}
cp /bin/busybox "$bundle/rootfs/bin/"
for a in $(/bin/busybox --list); do
	[ "$a" = busybox ] || ln -sf busybox "$bundle/rootfs/bin/$a"
done
cat > "$bundle/rootfs/hello.sh" <<'SH'
echo "hello from a container in its own VM"
echo "  guest kernel: $(uname -r)   hostname: $(hostname)"
echo "  processes:    $(ps -o pid,comm | tail -n +2 | tr -s ' \n' ' ')"
SH
cd "$bundle"
"$kabuto" spec
# Not a terminal, so it also works from scripts and CI.
sed -i 's/"terminal": true/"terminal": false/; s/^\(\t*\)"sh"$/\1"sh", "\/hello.sh"/' config.json
echo "host kernel: $(uname -r)"
start=$(date +%s%N)
"$kabuto" run "demo-$$"
echo "kabuto run took $(( ($(date +%s%N) - start) / 1000000 )) ms (boot, run, tear down)"
