#!/bin/bash
# tests/e2e/run.sh -- the project's end-to-end test: real pcscd, real PC/SC
# clients and QEMU's emulated USB CCID reader, with Debian's libccid and with
# our driver bundle, on a UHCI and an xHCI host controller.
#
# One QEMU guest per controller (TCG; Debian's 6.1 kernel, extracted, never
# installed; the host root read-only over 9p with a tmpfs overlay; udevd and
# pcscd inside; no network device). In each guest every driver in turn gets
# a freshly plugged reader and a fresh pcscd, and is checked with pcsc_scan,
# opensc-tool, pkcs15-tool, pkcs11-tool (an RSA signature verified with
# openssl) and e2e-client (the workspace's Rust client on the `pcsc` crate:
# reader list, APDUs, round-trip median/p95, card and reader events through
# SCardGetStatusChange). Card removal/insertion and reader unplug/replug are
# done by the host through QMP. The run ends with a side-by-side table of
# checks and timings and the line `N passed, M failed`.
#
# QEMU 7.2's usb-ccid sends a stray zero-length packet after a response whose
# size is a multiple of 64 when on xHCI; libccid 1.5.2 loses sync there. Its
# failures on xHCI are reported as "expected failure (known ZLP desync)" and
# not counted; every other failure counts. Exit status: 0 when nothing
# failed, 1 when a check failed, 2 on a usage or setup error.
#
# usage: tests/e2e/run.sh [options]           (as root: apt-get, QEMU's 9p export of /)
#   --controllers LIST   uhci,xhci (default both)               [E2E_CONTROLLERS]
#   --drivers LIST       libccid,ours (default both, in this order) [E2E_DRIVERS]
#   --bundle DIR         our bundle (default build/ifd-ccid.bundle) [E2E_BUNDLE]
#   --scenarios LIST     guest scenarios (default qemu_reader)  [E2E_SCENARIOS]
#   --work-dir DIR       cache: kernel, .debs, NSS db, runs (default /var/tmp/ccid-e2e) [E2E_WORK_DIR]
#   --run-dir DIR        logs of this run (default WORK/runs/<date-time>) [E2E_RUN_DIR]
#   --keep-logs          keep every run directory (default: the newest 10) [E2E_KEEP_LOGS=1]
#   --bench N            APDUs in the round-trip benchmark (default 200) [E2E_BENCH_N]
#   --boot-timeout S     limit until the guest is up (default 120)  [E2E_BOOT_TIMEOUT]
#   --timeout S          limit for one whole boot (default 360); each driver gets an
#                        equal share of it less 90 s for booting [E2E_TIMEOUT]
#   --smp N --mem MB     guest size (default 2 vCPUs, 1024 MB)      [E2E_SMP, E2E_MEM]
#   --client PATH        a prebuilt e2e-client (default: cargo build --release -p e2e-client)
#   --kernel-debs DIR    look for linux-image .debs here before downloading [E2E_KERNEL_DEBS]
#   --no-install         never install packages nor refresh apt's lists [E2E_NO_INSTALL=1]
#   -h, --help
#
# examples:
#   make bundle && tests/e2e/run.sh
#   tests/e2e/run.sh --drivers libccid --controllers uhci       # the test bed alone
#   tests/e2e/run.sh --bundle /tmp/other.bundle --keep-logs
#
# Logs: RUN/summary.txt, RUN/results.json, and per controller RUN/<hc>/:
# host.log (control port and QMP), console.log, qemu-cmdline.txt, and out/:
# suite.log, dmesg.txt, pcscd-<driver>.log (+ .color.log), <driver>/<step>.txt.
set -uo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)

CONTROLLERS=${E2E_CONTROLLERS:-uhci,xhci}
DRIVERS=${E2E_DRIVERS:-libccid,ours}
BUNDLE=${E2E_BUNDLE:-$REPO/build/ifd-ccid.bundle}
SCENARIOS=${E2E_SCENARIOS:-qemu_reader}
WORK=${E2E_WORK_DIR:-/var/tmp/ccid-e2e}
RUN=${E2E_RUN_DIR:-}
KEEP_LOGS=${E2E_KEEP_LOGS:-0}
BENCH_N=${E2E_BENCH_N:-200}
BOOT_TIMEOUT=${E2E_BOOT_TIMEOUT:-120}
TIMEOUT=${E2E_TIMEOUT:-360}
SMP=${E2E_SMP:-2}
MEM=${E2E_MEM:-1024}
CLIENT=${E2E_CLIENT:-}
KERNEL_DEBS=${E2E_KERNEL_DEBS:-}
NO_INSTALL=${E2E_NO_INSTALL:-0}
PY=/usr/bin/python3

usage() { sed -n '/^# usage:/,/^# Logs:/p' "$0" | sed -e 's/^# \{0,1\}//' -e '/^Logs:/d'; }
say() { printf '[e2e %s] %s\n' "$(date +%T)" "$*"; }
die() {
    say "ERROR: $*" >&2
    exit 2
}
need_value() { [ $# -ge 2 ] || die "$1 needs a value"; }

while [ $# -gt 0 ]; do
    case $1 in
        --controllers) need_value "$@"; CONTROLLERS=$2; shift ;;
        --drivers) need_value "$@"; DRIVERS=$2; shift ;;
        --bundle) need_value "$@"; BUNDLE=$2; shift ;;
        --scenarios) need_value "$@"; SCENARIOS=$2; shift ;;
        --work-dir) need_value "$@"; WORK=$2; shift ;;
        --run-dir) need_value "$@"; RUN=$2; shift ;;
        --keep-logs) KEEP_LOGS=1 ;;
        --bench) need_value "$@"; BENCH_N=$2; shift ;;
        --boot-timeout) need_value "$@"; BOOT_TIMEOUT=$2; shift ;;
        --timeout) need_value "$@"; TIMEOUT=$2; shift ;;
        --smp) need_value "$@"; SMP=$2; shift ;;
        --mem) need_value "$@"; MEM=$2; shift ;;
        --client) need_value "$@"; CLIENT=$2; shift ;;
        --kernel-debs) need_value "$@"; KERNEL_DEBS=$2; shift ;;
        --no-install) NO_INSTALL=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
    shift
done
for n in "$BENCH_N" "$BOOT_TIMEOUT" "$TIMEOUT" "$SMP" "$MEM"; do
    [[ $n =~ ^[0-9]+$ ]] || die "not a number: $n"
done
[ "$(id -u)" = 0 ] || die "run as root (apt-get, QEMU exporting / over 9p)"
T_BEGIN=$(date +%s)

# --- 1. host packages ------------------------------------------------------------
# qemu + smart-card emulation, the guest's userland (it runs the host's own
# root), the clients, certutil for the NSS db, and libpcsclite-dev/pkgconf
# for building e2e-client
PKGS="qemu-system-x86 busybox-static udev kmod usbutils pcscd libccid pcsc-tools opensc
      libnss3-tools openssl python3 libpcsclite-dev pkgconf"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    [ "$NO_INSTALL" = 1 ] && die "missing packages:$missing"
    mkdir -p "$WORK"
    say "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update >"$WORK/apt.log" 2>&1 || say "apt-get update failed, trying the install anyway"
    # shellcheck disable=SC2086
    timeout 900 apt-get install -y --no-install-recommends $missing >>"$WORK/apt.log" 2>&1 ||
        die "apt-get install failed, see $WORK/apt.log"
fi
[ -d /usr/lib/pcsc/drivers/ifd-ccid.bundle ] || die "Debian's libccid bundle is missing"

# --- 2. our bundle ------------------------------------------------------------------
BUNDLE_ARGS=()
for d in ${DRIVERS//,/ }; do
    case $d in
        libccid) ;;
        ours)
            plist=$BUNDLE/Contents/Info.plist
            [ -f "$plist" ] || die "our bundle is missing: no $plist (build it with 'make bundle', pass --bundle DIR, or run only --drivers libccid)"
            exe=$(awk '/<key>CFBundleExecutable<\/key>/ { getline; gsub(/.*<string>|<\/string>.*/, ""); print; exit }' "$plist")
            [ -n "$exe" ] && [ -f "$BUNDLE/Contents/Linux/$exe" ] ||
                die "bundle $BUNDLE: Contents/Linux/${exe:-<CFBundleExecutable>} missing"
            ;;
        *) die "unknown driver $d (known: libccid, ours)" ;;
    esac
done

# --- 3. the client ---------------------------------------------------------------------
if [ -z "$CLIENT" ]; then
    say "building e2e-client"
    ( cd "$REPO" && timeout 900 cargo build --release -p e2e-client --quiet ) || die "cargo build -p e2e-client failed"
    CLIENT=${CARGO_TARGET_DIR:-$REPO/target}/release/e2e-client
fi
[ -x "$CLIENT" ] || die "e2e-client not found at $CLIENT"

# --- 4. guest kernel: Debian's linux-image-amd64, extracted, cached -------------------
mkdir -p "$WORK/debs" || die "cannot create $WORK"
KDIR=$WORK/kernel
# apt_download PKG: apt-get download, refreshing the package lists once if needed
apt_download() {
    timeout 900 apt-get download "$1" >/dev/null 2>&1 && return 0
    [ "$NO_INSTALL" = 1 ] && return 1
    timeout 300 apt-get update >/dev/null 2>&1
    timeout 900 apt-get download "$1" >/dev/null 2>&1
}
fetch_kernel() {
    local meta dep deb tmp
    cd "$WORK/debs" || return 1
    meta=$(ls linux-image-amd64_*.deb 2>/dev/null | tail -1)
    if [ -z "$meta" ] && [ -n "$KERNEL_DEBS" ]; then
        cp "$KERNEL_DEBS"/linux-image-amd64_*.deb . 2>/dev/null
        meta=$(ls linux-image-amd64_*.deb 2>/dev/null | tail -1)
    fi
    if [ -z "$meta" ]; then
        say "downloading linux-image-amd64 (apt-get download)"
        apt_download linux-image-amd64 || { say "apt-get download linux-image-amd64 failed"; return 1; }
        meta=$(ls linux-image-amd64_*.deb | tail -1)
    fi
    dep=$(dpkg-deb -f "$meta" Depends | grep -o 'linux-image-[0-9][^ ,]*' | head -1)
    [ -n "$dep" ] || { say "cannot read the kernel package name from $meta"; return 1; }
    deb=$(ls "${dep}"_*.deb 2>/dev/null | tail -1)
    if [ -z "$deb" ] && [ -n "$KERNEL_DEBS" ]; then
        cp "$KERNEL_DEBS/${dep}"_*.deb . 2>/dev/null
        deb=$(ls "${dep}"_*.deb 2>/dev/null | tail -1)
    fi
    if [ -z "$deb" ]; then
        say "downloading $dep"
        apt_download "$dep" || { say "apt-get download $dep failed"; return 1; }
        deb=$(ls "${dep}"_*.deb | tail -1)
    fi
    say "extracting $deb"
    tmp=$WORK/kernel.tmp.$$
    rm -rf "$tmp"
    dpkg-deb -x "$deb" "$tmp" || return 1
    rm -rf "$KDIR"
    mv "$tmp" "$KDIR"
}
VMLINUZ=$(ls "$KDIR"/boot/vmlinuz-* 2>/dev/null | head -1)
if [ -z "$VMLINUZ" ]; then
    (fetch_kernel) || die "could not get the guest kernel"
    VMLINUZ=$(ls "$KDIR"/boot/vmlinuz-* 2>/dev/null | head -1)
    [ -n "$VMLINUZ" ] || die "no vmlinuz in the kernel package"
fi
KV=${VMLINUZ##*/vmlinuz-}
[ -f "$KDIR/lib/modules/$KV/modules.dep" ] || depmod -b "$KDIR" "$KV" || die "depmod failed"

# --- 5. NSS database: three self-signed RSA-2048 certificates with keys, no password --
NSSDB=$WORK/nssdb
if ! certutil -L -d "sql:$NSSDB" -n cert3 >/dev/null 2>&1; then
    say "creating the card's NSS database"
    tmp=$WORK/nssdb.tmp.$$
    rm -rf "$tmp"
    mkdir -p "$tmp"
    certutil -N -d "sql:$tmp" --empty-password || die "certutil -N failed"
    head -c 256 /dev/urandom >"$tmp/noise"
    for i in 1 2 3; do
        certutil -S -d "sql:$tmp" -n "cert$i" -s "CN=ccid e2e card key $i,O=ccid e2e" -x -t "CT,C,C" \
            -k rsa -g 2048 -v 120 -z "$tmp/noise" -m $((4200 + i)) \
            --keyUsage digitalSignature,keyEncipherment >/dev/null 2>&1 || die "certutil -S cert$i failed"
    done
    rm -f "$tmp/noise"
    rm -rf "$NSSDB"
    mv "$tmp" "$NSSDB"
fi

# --- 6. run directory, initramfs, snapshots of what the guest runs ----------------------
mkdir -p "$WORK/runs"
[ -n "$RUN" ] || RUN=$WORK/runs/$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN" || die "cannot create $RUN"
RUN=$(cd "$RUN" && pwd)
case $RUN/ in /run/* | /proc/* | /sys/* | /dev/*) die "the run directory cannot be under /run, /proc, /sys or /dev (the guest mounts its own)" ;; esac
ln -sfn "$RUN" "$WORK/runs/latest" 2>/dev/null
say "run directory $RUN"

IRD=$RUN/initramfs
rm -rf "$IRD"
mkdir -p "$IRD"/{bin,dev,proc,sys,lower,rw,root,modules}
cp /bin/busybox "$IRD/bin/busybox" || die "no static busybox"
ln -s busybox "$IRD/bin/sh"
cp "$E2E_DIR/guest/initramfs-init" "$IRD/init"
chmod 755 "$IRD/init"
modprobe -a -d "$KDIR" -S "$KV" --show-depends virtio_pci 9pnet_virtio 9p overlay 2>/dev/null |
    awk '$1 == "insmod" && !seen[$2]++ { print $2 }' >"$RUN/initramfs-modules.txt"
[ -s "$RUN/initramfs-modules.txt" ] || die "could not resolve the initramfs modules"
while read -r ko; do
    cp "$ko" "$IRD/modules/" || die "copying $ko"
    basename "$ko" >>"$IRD/modules/load"
done <"$RUN/initramfs-modules.txt"
( cd "$IRD" && find . | busybox cpio -o -H newc -R 0:0 2>/dev/null | gzip -1 >"$RUN/initrd.gz" ) ||
    die "building the initramfs failed"
rm -rf "$IRD"

mkdir -p "$RUN/bin"
cp "$CLIENT" "$RUN/bin/e2e-client"
HARNESS_BUNDLES=()
for d in ${DRIVERS//,/ }; do
    if [ "$d" = ours ]; then
        mkdir -p "$RUN/bundles/ours"
        cp -a "$BUNDLE" "$RUN/bundles/ours/ifd-ccid.bundle" || die "copying $BUNDLE"
        HARNESS_BUNDLES+=(--bundle "ours=$RUN/bundles/ours/ifd-ccid.bundle")
    fi
done

say "kernel $KV, controllers $CONTROLLERS, drivers $DRIVERS, scenarios $SCENARIOS (prepared in $(($(date +%s) - T_BEGIN)) s)"

# --- 7. boot, test, report ----------------------------------------------------------------
"$PY" -B "$E2E_DIR/host/harness.py" \
    --run-dir "$RUN" --tests "$E2E_DIR" --kernel "$VMLINUZ" --initrd "$RUN/initrd.gz" \
    --kmods "$KDIR/lib/modules" --nssdb "$NSSDB" --client "$RUN/bin/e2e-client" \
    --controllers "$CONTROLLERS" --drivers "$DRIVERS" "${HARNESS_BUNDLES[@]}" --scenarios "$SCENARIOS" \
    --bench "$BENCH_N" --boot-timeout "$BOOT_TIMEOUT" --timeout "$TIMEOUT" --smp "$SMP" --mem "$MEM"
rc=$?

if [ "$KEEP_LOGS" != 1 ]; then
    ls -1d "$WORK"/runs/2* 2>/dev/null | head -n -10 | while read -r old; do rm -rf "$old"; done
fi
say "whole run: $(($(date +%s) - T_BEGIN)) s, logs in $RUN"
exit "$rc"
