#!/usr/bin/env bash
# install-peers.sh installs the peers `make bench` compares meshgate with
# (nginx, HAProxy, Caddy) and the load generator wrk, from Debian's archive.
#
# The benchmark harness starts each peer itself, as its own process with a
# generated config on free loopback ports, so the packages' own services
# must not run: they would hold port 80 and compete for the two cores. The
# script keeps them from starting during installation (policy-rc.d) and
# stops and disables them afterwards, with systemd when it is running and
# through the SysV scripts otherwise (containers and VMs without an init
# system).
#
# Usage: bench/install-peers.sh   (as root, or through sudo)
set -euo pipefail

packages=(nginx haproxy caddy wrk)
services=(nginx haproxy caddy)

if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		exec sudo -- "$0" "$@"
	fi
	echo "install-peers: must run as root (apt-get install ${packages[*]})" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-peers: apt-get not found; install ${packages[*]} with your package manager" >&2
	exit 1
fi

# Debian's maintainer scripts start services through invoke-rc.d, which asks
# /usr/sbin/policy-rc.d first; exit code 101 means "do not start". Install a
# temporary one unless the system (Docker images, for one) already has its own.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\n# temporary, from meshgate bench/install-peers.sh\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	own_policy=1
fi
cleanup() {
	if [[ $own_policy -eq 1 ]]; then
		rm -f "$policy"
	fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${packages[@]}"

# Whatever slipped through (or was running before): stop it and keep it from
# starting at boot.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
	for s in "${services[@]}"; do
		systemctl disable --now "$s.service" 2>/dev/null || true
	done
else
	for s in "${services[@]}"; do
		# Without a running systemd, `systemctl disable` still removes the
		# unit's symlinks offline, so a later boot with systemd keeps it off.
		if command -v systemctl >/dev/null 2>&1; then
			systemctl disable "$s.service" >/dev/null 2>&1 || true
		fi
		if [[ -x /etc/init.d/$s ]]; then
			/etc/init.d/"$s" stop >/dev/null 2>&1 || true
			if command -v update-rc.d >/dev/null 2>&1; then
				update-rc.d "$s" disable >/dev/null 2>&1 || true
			fi
		fi
	done
fi

echo "install-peers: installed:"
for bin in nginx haproxy caddy wrk; do
	printf '  %-8s %s\n' "$bin" "$(command -v "$bin" || echo MISSING)"
done
