#!/usr/bin/env bash
# Starts the real clients the client tests drive, registered with the
# installed kabuto: dockerd (daemon.json "runtimes"), and imports the local
# busybox image into docker and podman (nothing is pulled). Idempotent.
set -euo pipefail
kabuto=${KABUTO:-/usr/local/bin/kabuto}
mkdir -p /etc/docker
want='{"runtimes": {"kabuto": {"path": "'"$kabuto"'"}}}'
if [ ! -f /etc/docker/daemon.json ] || ! grep -q '"kabuto"' /etc/docker/daemon.json; then
	echo "$want" > /etc/docker/daemon.json
	pkill -HUP dockerd 2>/dev/null || true
fi
if ! docker info >/dev/null 2>&1; then
	nohup dockerd > /var/log/kabuto-test-dockerd.log 2>&1 &
	for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
docker info --format '{{json .Runtimes}}' | grep -q kabuto || { echo "dockerd does not know kabuto" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,etc,tmp,www}
cp /bin/busybox "$root/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
echo "hello from kabuto" > "$root/www/index.html"
tar -C "$root" -c . > /tmp/kabuto-bb.tar
docker image inspect kabuto-bb:latest >/dev/null 2>&1 || docker import /tmp/kabuto-bb.tar kabuto-bb:latest >/dev/null
if command -v podman >/dev/null; then
	podman image exists localhost/kabuto-bb:latest || podman import /tmp/kabuto-bb.tar localhost/kabuto-bb:latest >/dev/null
fi
# A private containerd for ctr (its own root, state and socket).
ctrd=/run/kabuto-ctrd
if ! ctr -a $ctrd/containerd.sock version >/dev/null 2>&1; then
	mkdir -p $ctrd
	nohup containerd --root /var/lib/kabuto-ctrd --state $ctrd --address $ctrd/containerd.sock \
		> /var/log/kabuto-test-containerd.log 2>&1 &
	for _ in $(seq 1 30); do ctr -a $ctrd/containerd.sock version >/dev/null 2>&1 && break; sleep 1; done
fi
if ! ctr -a $ctrd/containerd.sock -n kabuto images ls -q | grep -q kabuto-bb; then
	docker save kabuto-bb:latest -o /tmp/kabuto-bb-docker.tar
	ctr -a $ctrd/containerd.sock -n kabuto images import /tmp/kabuto-bb-docker.tar >/dev/null
fi
echo "clients ready"
