#!/bin/bash
# After the suite: nothing a test started or created may remain. Looks for QEMU and fake
# servers started from test directories, processes of qdm's uid range, supervisors, and test
# directories or sockets under $TMPDIR. Prints what it finds; exit 1 if anything.
set -u
tmp="${TMPDIR:-/tmp}"
left=0
procs=$(ps -eo pid=,uid=,args= | awk -v self=$$ '
        $1 != self && $3 != "awk" && $3 != "ps" && ($3 ~ /fake-qmp/ || $0 ~ /qdm-test-/ || $0 ~ /__supervise/ ||
                       ($2 >= 64000 && $2 <= 64999)) { print }')
if [ -n "$procs" ]; then
        echo "left behind: processes:"; echo "$procs"; left=1
fi
dirs=$(find "$tmp" -maxdepth 1 -name 'qdm-test-*' 2>/dev/null)
if [ -n "$dirs" ]; then
        echo "left behind: directories:"; echo "$dirs"; left=1
fi
exit $left
