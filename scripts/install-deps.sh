#!/bin/bash
# Install what qdm needs to build, test and run, from Debian 12's archive. The one list of
# packages: .ci/run, demo.sh and tests/run-all.sh all use it.
set -euo pipefail
packages=(
        gcc libc6-dev meson ninja-build pkg-config python3 git ca-certificates procps
        libjson-c-dev libcmocka-dev scdoc
        clang clang-format libclang-rt-14-dev
        qemu-system-x86 qemu-utils
        ipxe # /boot/ipxe.lkrn: a 300 KB Linux-format kernel for the jail's direct-boot test
)
missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
        echo "qdm needs these Debian packages: ${missing[*]}" >&2
        echo "run as root (sudo $0) to install them" >&2
        exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
