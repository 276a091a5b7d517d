#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Test the bash completion of qdm: source it into this (plain, non-interactive) bash, fake
# command lines the way bash splits them, and compare COMPREPLY with what qdm accepts there.
# The run directories are fakes in a private temporary directory.
#
# Usage: test-completion.sh PATH/TO/qdm.bash
set -u

completion=${1:?usage: test-completion.sh PATH/TO/qdm.bash}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/run/vm1" "$tmp/run/vm2" "$tmp/run/web-1.x" "$tmp/run/.uids" "$tmp/run/.cache" \
        "$tmp/other/db1" "$tmp/other/db2" "$tmp/cfg/sub" "$tmp/xdg/qdm/xvm"
touch "$tmp/run/not-a-dir" "$tmp/cfg/a.json" "$tmp/cfg/b.json" "$tmp/cfg/notes.txt"
mkdir "$tmp/run/bad name"

unset QDM_RUN_DIR
# shellcheck source=completion/qdm.bash
source "$completion" || exit 1
complete -p qdm >/dev/null || { echo "FAIL: 'complete -F _qdm qdm' is not registered"; exit 1; }

# Split LINE (the text up to the cursor) the way bash fills COMP_WORDS: at blanks, with '='
# after an option as a word of its own; a trailing blank starts an empty current word.
complete_line()
{
        local line=$1 tok
        COMP_WORDS=()
        for tok in $line; do
                if [[ $tok =~ ^(--[^=]+)=(.*)$ ]]; then
                        COMP_WORDS+=("${BASH_REMATCH[1]}" "=")
                        [[ -n ${BASH_REMATCH[2]} ]] && COMP_WORDS+=("${BASH_REMATCH[2]}")
                else
                        COMP_WORDS+=("$tok")
                fi
        done
        [[ $line == *' ' ]] && COMP_WORDS+=("")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        COMP_LINE=$line
        COMP_POINT=${#line}
        COMPREPLY=()
        _qdm qdm "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}" 2>/dev/null
}

failures=0
tests=0

# expect LINE [WORD...]: the completions for LINE are exactly WORD... (in any order).
expect()
{
        local line=$1 got want
        shift
        complete_line "$line"
        got=$(printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | sort | tr '\n' ' ')
        want=$(printf '%s\n' "$@" | sed '/^$/d' | sort | tr '\n' ' ')
        tests=$((tests + 1))
        if [[ $got != "$want" ]]; then
                echo "FAIL: '$line'"
                echo "    got:  [$got]"
                echo "    want: [$want]"
                failures=$((failures + 1))
        fi
}

# expect_has LINE WORD...: the completions for LINE include every WORD.
expect_has()
{
        local line=$1 w c found
        shift
        complete_line "$line"
        tests=$((tests + 1))
        for w in "$@"; do
                found=0
                for c in "${COMPREPLY[@]}"; do
                        [[ $c == "$w" ]] && found=1
                done
                if ((!found)); then
                        echo "FAIL: '$line': '$w' missing from [${COMPREPLY[*]}]"
                        failures=$((failures + 1))
                fi
        done
}

R="$tmp/run"

# Commands and global options.
expect 'qdm st' status
expect 'qdm s' status shutdown
expect 'qdm a' audit
expect 'qdm --run-dir /x --' --run-dir --verbose --help --version
expect 'qdm -v re' resume
expect_has 'qdm ' create status list resume pause shutdown audit destroy qmp events logs version
expect "qdm --run-dir $tmp/ot" "$tmp/other"
expect "qdm --run-dir=$tmp/ot" "$tmp/other"

# Each command's options.
expect 'qdm create --' --paused --help --timeout
expect 'qdm status --' --json --help
expect 'qdm audit -' --json --help -h
expect 'qdm list --j' --json
expect 'qdm shutdown --' --force --help --timeout
expect 'qdm qmp --' --pretty --help --socket --timeout --drain-timeout
expect 'qdm events -' --follow -f --help -h
expect 'qdm destroy -' --help -h
expect 'qdm create --timeout ' # seconds: nothing to offer

# Device-model names: --run-dir on the line, then QDM_RUN_DIR.
expect "qdm --run-dir $R status " vm1 vm2 web-1.x
expect "qdm --run-dir $R status v" vm1 vm2
expect "qdm --run-dir=$R destroy w" web-1.x
expect "qdm --run-dir $R audit --json " vm1 vm2 web-1.x
expect "qdm --run-dir $tmp/other logs " db1 db2
expect "qdm -v --run-dir $R events -f " vm1 vm2 web-1.x
expect "qdm --run-dir $R status vm1 " # one NAME only
expect "qdm --run-dir $R list " # no NAME at all
export QDM_RUN_DIR=$R
expect 'qdm resume ' vm1 vm2 web-1.x
expect "qdm --run-dir $tmp/other pause " db1 db2
expect 'qdm shutdown --timeout 5 --force vm' vm1 vm2
expect 'qdm status --json vm2' vm2
unset QDM_RUN_DIR
if ((EUID != 0)); then
        XDG_RUNTIME_DIR=$tmp/xdg expect 'qdm destroy ' xvm
fi
expect "qdm --run-dir $tmp/missing status "

# Configuration files for create.
expect "qdm create $tmp/cfg/" "$tmp/cfg/a.json" "$tmp/cfg/b.json" "$tmp/cfg/sub"
expect "qdm create --paused $tmp/cfg/a" "$tmp/cfg/a.json"
expect "qdm create $tmp/cfg/a.json " # one CONFIG.json only

# QMP commands after NAME, or right away with --socket.
expect_has "qdm --run-dir $R qmp vm1 " query-status cont stop system_powerdown query-block \
        query-version quit query-qmp-schema
expect "qdm --run-dir $R qmp vm1 query-st" query-status
expect "qdm --run-dir $R qmp --pretty --timeout 3 v" vm1 vm2
expect "qdm --run-dir $R qmp --pretty --timeout 3 vm1 sys" system_powerdown system_reset \
        system_wakeup
expect "qdm qmp --socket $tmp/cfg/a.json query-ve" query-version
expect "qdm qmp --socket=$tmp/cfg/a.json co" cont
expect "qdm qmp --socket $tmp/cfg/n" "$tmp/cfg/notes.txt"
expect "qdm --run-dir $R qmp vm1 query-status " # ARGS_JSON: nothing to offer

echo "$tests tests, $failures failed"
((failures == 0))
