#!/usr/bin/env bash
# ensure.sh NAME — build the tool NAME (consul, jaeger) from its own module in
# tools/NAME into .bin/NAME, once per machine: the build is skipped while the
# binary exists and was built from the same tools/NAME/go.sum.
set -euo pipefail
name=${1:?usage: tools/ensure.sh NAME}
root=$(cd "$(dirname "$0")/.." && pwd)
mod=$root/tools/$name
bin=$root/.bin/$name
stamp=$bin.stamp
[[ -f $mod/go.mod ]] || { echo "ensure.sh: no module at tools/$name" >&2; exit 2; }
want=$(sha256sum "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -d' ' -f1)
if [[ -x $bin && -f $stamp && $(cat "$stamp") == "$want" ]]; then
	exit 0
fi
pkg=$(sed -n 's/^tool //p' "$mod/go.mod" | head -n1)
[[ -n $pkg ]] || { echo "ensure.sh: tools/$name/go.mod declares no tool" >&2; exit 2; }
mkdir -p "$root/.bin"
echo "ensure.sh: building $name from $pkg (once per machine; this takes a few minutes)" >&2
start=$(date +%s)
(cd "$mod" && GOFLAGS=-mod=mod go build -trimpath -o "$bin.tmp" "$pkg")
mv "$bin.tmp" "$bin"
echo "$want" > "$stamp"
echo "ensure.sh: built .bin/$name in $(( $(date +%s) - start ))s" >&2
