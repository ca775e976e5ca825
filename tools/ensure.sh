#!/usr/bin/env bash
# ensure.sh NAME — make .bin/NAME (consul, jaeger) exist, built from the Go
# module in tools/NAME. Builds are cached per machine outside the work tree
# ($MESHGATE_TOOLS_CACHE, default ~/.cache/meshgate-tools), keyed by the
# module's go.mod and go.sum, so fresh clones (CI) reuse them.
set -euo pipefail
name=${1:?usage: tools/ensure.sh NAME}
root=$(cd "$(dirname "$0")/.." && pwd)
mod=$root/tools/$name
[[ -f $mod/go.mod ]] || { echo "ensure.sh: no module at tools/$name" >&2; exit 2; }
key=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)
cache=${MESHGATE_TOOLS_CACHE:-${HOME:-/root}/.cache/meshgate-tools}
built=$cache/$name-$key
link=$root/.bin/$name
mkdir -p "$root/.bin" "$cache"
if [[ ! -x $built ]]; then
	pkg=$(sed -n 's/^tool //p' "$mod/go.mod" | head -n1)
	[[ -n $pkg ]] || { echo "ensure.sh: tools/$name/go.mod declares no tool" >&2; exit 2; }
	echo "ensure.sh: building $name from $pkg (once per machine; a few minutes)" >&2
	start=$(date +%s)
	(cd "$mod" && GOFLAGS=-mod=mod go build -trimpath -o "$built.tmp" "$pkg")
	mv "$built.tmp" "$built"
	echo "ensure.sh: built $name in $(( $(date +%s) - start ))s" >&2
fi
if [[ "$(readlink "$link" 2>/dev/null)" != "$built" ]]; then
	rm -f "$link" "$link.stamp"
	ln -s "$built" "$link"
fi
