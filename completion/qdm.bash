# bash completion for qdm(1)                                       -*- shell-script -*-
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Completes the global options, the commands, each command's options, device-model names
# (the directories of the run directory the command line refers to: --run-dir before the
# command, else $QDM_RUN_DIR, else /run/qdm for root or $XDG_RUNTIME_DIR/qdm), configuration
# files for `qdm create`, and common QMP command names for `qdm qmp`. Like qdm itself it
# treats everything after the command as the command's, and a command's options as ending at
# its first operand.

_qdm_commands='create status list resume pause shutdown audit destroy qmp events logs version help'

# A selection of QEMU's QMP commands (all present in QEMU 7.2) that make sense one at a time
# from a shell; `qdm qmp NAME query-commands` lists them all.
_qdm_qmp_commands='query-status cont stop system_powerdown system_reset system_wakeup quit
query-version query-qmp-schema query-commands query-command-line-options query-name
query-uuid query-target query-machines query-current-machine query-kvm query-cpus-fast
query-hotpluggable-cpus query-memory-size-summary query-memdev query-block query-blockstats
query-named-block-nodes query-block-jobs query-chardev query-pci query-iothreads
query-migrate query-migrate-capabilities query-balloon query-mice query-fdsets
query-display-options query-vnc qom-list qom-get qom-set device_add device_del
device-list-properties blockdev-add blockdev-del block_resize eject netdev_add netdev_del
object-add object-del set_link balloon screendump send-key inject-nmi migrate
migrate_cancel dump-guest-memory human-monitor-command'

# Options per command: "flags|options that take an argument".
_qdm_command_options()
{
        case $1 in
        create) echo '--paused --help -h|--timeout' ;;
        status | list | audit) echo '--json --help -h|' ;;
        resume | pause) echo '--help -h|--timeout' ;;
        shutdown) echo '--force --help -h|--timeout' ;;
        destroy | version) echo '--help -h|' ;;
        qmp) echo '--pretty --help -h|--socket --timeout --drain-timeout' ;;
        events | logs) echo '--follow -f --help -h|' ;;
        *) echo '|' ;;
        esac
}

# The run directory: $1 is the --run-dir value from the command line (may be empty).
_qdm_run_dir()
{
        local dir=$1
        # The word as typed: drop one level of quotes, expand a leading ~/.
        dir=${dir#[\"\']}
        dir=${dir%[\"\']}
        [[ $dir == '~' ]] && dir=$HOME
        [[ $dir == '~/'* ]] && dir=$HOME/${dir#'~/'}
        if [[ -z $dir ]]; then
                if [[ -n ${QDM_RUN_DIR-} ]]; then
                        dir=$QDM_RUN_DIR
                elif ((EUID == 0)); then
                        dir=/run/qdm
                elif [[ ${XDG_RUNTIME_DIR-} == /* ]]; then
                        dir=$XDG_RUNTIME_DIR/qdm
                else
                        return 1
                fi
        fi
        printf '%s\n' "$dir"
}

# Device-model names: the directories of the run directory whose names qdm accepts
# (1-64 of [A-Za-z0-9_.-], not starting with '.'; so never .uids or .cache).
_qdm_names()
{
        local dir entry name
        dir=$(_qdm_run_dir "$1") || return 0
        [[ -d $dir ]] || return 0
        for entry in "$dir"/*; do
                [[ -d $entry ]] || continue
                name=${entry##*/}
                [[ $name == .* || ${#name} -gt 64 || $name == *[!A-Za-z0-9_.-]* ]] && continue
                printf '%s\n' "$name"
        done
}

# File names for the word $cur: directories, and files matching the glob $1 (all if empty);
# with $1 = -d directories only.
_qdm_files()
{
        if declare -F _filedir >/dev/null; then
                case $1 in
                -d) _filedir -d ;;
                '*.json') _filedir json ;;
                *) _filedir ;;
                esac
                return
        fi
        local IFS=$'\n'
        compopt -o filenames 2>/dev/null
        COMPREPLY+=($(compgen -d -- "$cur"))
        case $1 in
        -d) ;;
        '') COMPREPLY+=($(compgen -f -- "$cur")) ;;
        *) COMPREPLY+=($(compgen -f -X "!$1" -- "$cur")) ;;
        esac
}

# The words of the list $1 that start with $cur.
_qdm_words()
{
        local -a found
        mapfile -t found < <(compgen -W "$1" -- "$cur")
        COMPREPLY+=("${found[@]}")
}

_qdm()
{
        # Reassemble "--option=value", which bash splits at '=' (COMP_WORDBREAKS), so that
        # words[] holds the words as qdm's getopt will see them. `split` says whether the
        # current word was split: its completions then replace only the part after '='.
        local -a words=()
        local i tok joining=0 split=0
        for ((i = 0; i <= COMP_CWORD; i++)); do
                tok=${COMP_WORDS[i]}
                if [[ $tok == '=' && ${#words[@]} -gt 0 && ${words[-1]} == --* && ${words[-1]} != *=* ]]; then
                        words[-1]+='='
                        joining=1
                        ((i == COMP_CWORD)) && split=1
                elif ((joining)); then
                        words[-1]+=$tok
                        joining=0
                        ((i == COMP_CWORD)) && split=1
                else
                        words+=("$tok")
                fi
        done
        local cword=$((${#words[@]} - 1))
        local word=${words[cword]}
        local cur=$word opt=''
        if [[ $word == --*=* ]]; then
                opt=${word%%=*}
                cur=${word#*=}
        fi
        local prev=''
        ((cword > 0)) && prev=${words[cword - 1]}
        COMPREPLY=()

        # The global options, up to the command.
        local run_dir='' command='' ci
        for ((i = 1; i < cword; i++)); do
                tok=${words[i]}
                case $tok in
                --run-dir=* | --run-di=* | --run-d=* | --run-=* | --run=* | --ru=* | --r=*)
                        run_dir=${tok#*=} ;;
                --run-dir | --run-di | --run-d | --run- | --run | --ru | --r)
                        ((i + 1 < cword)) && run_dir=${words[i + 1]}
                        ((i++)) ;;
                -*) ;;
                *)
                        command=$tok
                        ci=$i
                        break ;;
                esac
        done

        # A value being completed: after "--option " or in "--option=".
        local value_of=''
        if [[ -n $opt ]]; then
                value_of=$opt
        elif [[ $prev == --* && $prev != *=* ]]; then
                value_of=$prev
        fi

        if [[ -z $command ]]; then
                case $value_of in
                --run-dir | --run-di | --run-d | --run- | --run | --ru | --r)
                        _qdm_files -d
                        ((split)) || [[ -z $opt ]] || COMPREPLY=("${COMPREPLY[@]/#/$opt=}")
                        return ;;
                esac
                if [[ $cur == -* ]]; then
                        _qdm_words '--run-dir --verbose -v --help -h --version'
                else
                        _qdm_words "$_qdm_commands"
                fi
                return
        fi

        # The command's options, up to its first operand; then count the operands.
        local spec flags with_arg
        spec=$(_qdm_command_options "$command")
        flags=${spec%%|*}
        with_arg=${spec#*|}
        local options_done=0 n=0 socket=0 takes
        for ((i = ci + 1; i < cword; i++)); do
                tok=${words[i]}
                if ((!options_done)) && [[ $tok == -?* ]]; then
                        [[ $tok == -- ]] && { options_done=1; continue; }
                        [[ $tok == --socket || $tok == --socket=* ]] && socket=1
                        [[ $tok == *=* ]] && continue
                        # An option that takes its argument in the next word (unambiguous
                        # prefixes too, as getopt_long accepts them).
                        for takes in $with_arg; do
                                if [[ $tok == --?* && $takes == "$tok"* ]]; then
                                        [[ $takes == --socket ]] && socket=1
                                        ((i++))
                                        break
                                fi
                        done
                        continue
                fi
                options_done=1
                ((n++))
        done

        if ((!options_done)) && [[ -n $value_of ]]; then
                for takes in $with_arg; do
                        [[ $takes == "$value_of"* ]] || continue
                        # --timeout and --drain-timeout take seconds: nothing to offer.
                        if [[ $takes == --socket ]]; then
                                _qdm_files ''
                                ((split)) || [[ -z $opt ]] || COMPREPLY=("${COMPREPLY[@]/#/$opt=}")
                        fi
                        return
                done
        fi

        if ((!options_done)) && [[ $cur == -* ]]; then
                _qdm_words "$flags $with_arg"
                return
        fi

        case $command in
        create)
                ((n == 0)) && _qdm_files '*.json' ;;
        status | resume | pause | shutdown | audit | destroy | events | logs)
                ((n == 0)) && _qdm_words "$(_qdm_names "$run_dir")" ;;
        qmp)
                if ((socket)); then
                        ((n == 0)) && _qdm_words "$_qdm_qmp_commands"
                else
                        ((n == 0)) && _qdm_words "$(_qdm_names "$run_dir")"
                        ((n == 1)) && _qdm_words "$_qdm_qmp_commands"
                fi ;;
        esac
        return 0
}

complete -F _qdm qdm
