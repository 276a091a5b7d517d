#!/bin/bash
# The main job, end to end on this machine: install what qdm needs (Debian packages), build it,
# then start a real restricted QEMU device model paused, show it ready and audited, resume it,
# and destroy it. Run as root: restriction means a uid of its own, a chroot and namespaces.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
qdm=$PWD/build/src/cli/qdm
export QDM_RUN_DIR=$(mktemp -d /tmp/qdm-demo.XXXXXX)
trap '"$qdm" destroy demo >/dev/null 2>&1 || true; rm -rf "$QDM_RUN_DIR"' EXIT
cat >"$QDM_RUN_DIR/demo.json" <<'JSON'
{
  "name": "demo",
  "machine": "q35",
  "memory_mib": 128,
  "restrict": { "mode": "qemu" }
}
JSON
run() { echo "\$ qdm $*"; "$qdm" "$@"; echo; }
run create --paused "$QDM_RUN_DIR/demo.json"
run status demo
if "$qdm" audit --help >/dev/null 2>&1; then run audit demo; fi
run resume demo
run qmp demo query-status
run events demo
run destroy demo
trap 'rm -rf "$QDM_RUN_DIR"' EXIT
