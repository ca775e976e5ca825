#!/usr/bin/env bash
# run.sh BINDIR — what `make run` does: start the demo services and meshgate
# in front of them on its embedded default configuration
# (deployments/meshgate.default.yaml), print what to try, and wait. Ctrl-C
# stops both.
#
# BINDIR holds the binaries `make build` writes: meshgate and meshgate-demo.
#
# Environment:
#   MESHGATE_CONFIG       passed on to meshgate, which then loads that file
#                         instead of the embedded default. The demo instances
#                         below stay the same.
#   MESHGATE_LISTEN_ADDR  meshgate's traffic address (default 127.0.0.1:8080)
#   MESHGATE_ADMIN_ADDR   meshgate's admin address (default 127.0.0.1:9901);
#                         set both when MESHGATE_CONFIG moves them.
#
# Needs bash 4.3 or later, curl and coreutils.
set -euo pipefail

# The demo instances, as meshgate-demo -listen flags. They must be exactly
# the instances of the services in meshgate.default.yaml:
# deployments/embed_test.go checks that the two agree.
DEMO_INSTANCES=(
	products=127.0.0.1:9101
	products=127.0.0.1:9102
	products=127.0.0.1:9103
	users=127.0.0.1:9201
	users=127.0.0.1:9202
	orders=127.0.0.1:9301
	orders=127.0.0.1:9302
)

: "${MESHGATE_LISTEN_ADDR:=127.0.0.1:8080}"
: "${MESHGATE_ADMIN_ADDR:=127.0.0.1:9901}"

DEMO_TIMEOUT=10  # seconds for every demo instance to answer /healthz
READY_TIMEOUT=15 # seconds for meshgate's /readyz to answer 200
STOP_TIMEOUT=10  # seconds a process gets after SIGTERM before SIGKILL

say() { printf 'run.sh: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}

if [[ $# -ne 1 ]]; then
	echo "usage: $0 BINDIR   (BINDIR holds meshgate and meshgate-demo; see make run)" >&2
	exit 2
fi
bindir=$1

command -v curl >/dev/null 2>&1 ||
	die "curl is not installed; run.sh needs it to wait for the services (Debian/Ubuntu: apt-get install curl)"
for bin in meshgate meshgate-demo; do
	[[ -x $bindir/$bin ]] || die "$bindir/$bin is missing or not executable; build it with: make build"
done

# host_of and port_of split host:port; an empty or wildcard host is reached
# through loopback.
host_of() {
	local h=${1%:*}
	case $h in "" | 0.0.0.0 | "[::]") h=127.0.0.1 ;; esac
	h=${h#[}
	printf '%s' "${h%]}"
}
port_of() { printf '%s' "${1##*:}"; }

# port_taken succeeds when something accepts connections on host:port.
port_taken() {
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$(host_of "$1")" "$(port_of "$1")" 2>/dev/null
}

# Fail early, naming the port, rather than leaving half of the set-up
# running.
port_taken "$MESHGATE_LISTEN_ADDR" &&
	die "port $(port_of "$MESHGATE_LISTEN_ADDR") is already in use ($MESHGATE_LISTEN_ADDR, meshgate's traffic listener); stop what listens there (ss -ltnp shows it) and try again"
port_taken "$MESHGATE_ADMIN_ADDR" &&
	die "port $(port_of "$MESHGATE_ADMIN_ADDR") is already in use ($MESHGATE_ADMIN_ADDR, meshgate's admin listener); stop what listens there (ss -ltnp shows it) and try again"
for spec in "${DEMO_INSTANCES[@]}"; do
	port_taken "${spec#*=}" &&
		die "port $(port_of "${spec#*=}") is already in use (${spec#*=}, demo instance ${spec%%=*}); stop what listens there (ss -ltnp shows it) and try again"
done

logdir=$(mktemp -d "${TMPDIR:-/tmp}/meshgate-run.XXXXXX")
demo_pid=""
gw_pid=""

# stop_process PID NAME: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL.
stop_process() {
	local pid=$1 name=$2 i
	[[ -n $pid ]] || return 0
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			say "$name did not stop within ${STOP_TIMEOUT}s of SIGTERM; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
}

# cleanup stops meshgate first, so that it stops taking requests before the
# services behind it go away.
cleanup() {
	trap '' INT TERM HUP
	stop_process "$gw_pid" meshgate
	gw_pid=""
	stop_process "$demo_pid" meshgate-demo
	demo_pid=""
	rm -rf "$logdir"
}
trap cleanup EXIT
trap 'echo >&2; say "stopping meshgate and the demo services"; cleanup; trap - EXIT; exit 0' INT TERM HUP

# exit_status PID: the exit status of a child that has ended.
exit_status() {
	local status=0
	wait "$1" 2>/dev/null || status=$?
	printf '%s' "$status"
}

# show_log FILE: the last lines a process wrote, indented.
show_log() {
	tail -n 20 "$1" | sed 's/^/    /' >&2
}

# Each child gets its own process group (job control), so a Ctrl-C in the
# terminal reaches only this script, which then stops the children in
# order with one SIGTERM each.
set -m

# Output goes to the terminal and to a log, so that an early exit can be
# explained below the rest.
listen_flags=()
for spec in "${DEMO_INSTANCES[@]}"; do
	listen_flags+=(-listen "$spec")
done
"$bindir/meshgate-demo" "${listen_flags[@]}" > >(tee "$logdir/demo.log") 2>&1 </dev/null &
demo_pid=$!

deadline=$((SECONDS + DEMO_TIMEOUT))
for spec in "${DEMO_INSTANCES[@]}"; do
	url="http://${spec#*=}/healthz"
	until curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; do
		if ! kill -0 "$demo_pid" 2>/dev/null; then
			status=$(exit_status "$demo_pid")
			demo_pid=""
			say "meshgate-demo exited with status $status before its instances were up. Its last output:"
			show_log "$logdir/demo.log"
			exit 1
		fi
		((SECONDS < deadline)) ||
			die "demo instance ${spec%%=*} did not answer $url within ${DEMO_TIMEOUT}s"
		sleep 0.1
	done
done

# No --config: meshgate then loads $MESHGATE_CONFIG when set (it is in the
# environment it inherits) and its embedded default otherwise.
"$bindir/meshgate" run > >(tee "$logdir/meshgate.log") 2>&1 </dev/null &
gw_pid=$!

readyz="http://$MESHGATE_ADMIN_ADDR/readyz"
deadline=$((SECONDS + READY_TIMEOUT))
code=""
while :; do
	code=$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "$readyz" 2>/dev/null) || true
	[[ $code == 200 ]] && break
	if ! kill -0 "$gw_pid" 2>/dev/null; then
		status=$(exit_status "$gw_pid")
		gw_pid=""
		say "meshgate exited with status $status before $readyz answered 200. Its last output:"
		show_log "$logdir/meshgate.log"
		exit 1
	fi
	if ((SECONDS >= deadline)); then
		case $code in
		"" | 000) last="no answer" ;;
		*) last="last answer: HTTP $code" ;;
		esac
		die "meshgate did not become ready within ${READY_TIMEOUT}s ($readyz, $last)"
	fi
	sleep 0.2
done

# For display: loopback is easier to read as localhost.
show_addr() {
	local h
	h=$(host_of "$1")
	[[ $h == 127.0.0.1 ]] && h=localhost
	printf '%s:%s' "$h" "$(port_of "$1")"
}
gw=$(show_addr "$MESHGATE_LISTEN_ADDR")
admin=$(show_addr "$MESHGATE_ADMIN_ADDR")
if [[ -n ${MESHGATE_CONFIG:-} ]]; then
	config="$MESHGATE_CONFIG (from MESHGATE_CONFIG)"
else
	config="the embedded default, deployments/meshgate.default.yaml"
fi

cat <<EOF

meshgate is ready on http://$gw with $config,
in front of ${#DEMO_INSTANCES[@]} demo instances (products x3, users x2, orders x2).

Try the services (X-Instance names the instance that answered):
  curl -s  $gw/products
  curl -si $gw/users/1
  curl -s  $gw/orders/3
  curl -si $gw/products/42      # an unknown id: 404 as JSON
  curl -si $gw/orders -H 'Content-Type: application/json' -d '{"user_id": 1, "product_ids": [1, 3]}'
  curl -sN '$gw/products/events?n=10'      # Server-Sent Events, as they come
  for i in 1 2 3 4 5 6; do curl -si $gw/products | grep -i '^x-instance'; done

The admin listener:
  curl -s  $admin/admin/routes
  curl -s  $admin/admin/instances
  curl -s  $admin/admin/config
  curl -si $admin/readyz

Press Ctrl-C to stop.
EOF

# Wait for a signal (the trap above) or for either process to end on its own.
status=0
wait -n "$gw_pid" "$demo_pid" || status=$?
if ! kill -0 "$gw_pid" 2>/dev/null; then
	gw_pid=""
	die "meshgate exited on its own (status $status); stopping the demo services"
fi
demo_pid=""
die "meshgate-demo exited on its own (status $status); stopping meshgate"
