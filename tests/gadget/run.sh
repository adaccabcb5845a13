#!/bin/bash
# tests/gadget/run.sh -- ccid-sim's USB gadget (dummy_hcd + configfs +
# FunctionFS) inside the e2e guest, seen by pcscd through udev and libusb.
#
# Builds `ccid-sim` and the kernel-level test `gadget_kernel`, puts them in
# the run directory's bin/, and runs tests/e2e/run.sh with the `gadget`
# scenario (tests/e2e/guest/scenarios/gadget.sh): the guest boot, pcscd
# control, reporting and closing line `N passed, M failed` are the e2e
# harness's. Every e2e option can be given and overrides the defaults set
# here (see tests/e2e/run.sh --help).
#
# usage: sudo tests/gadget/run.sh [e2e options]
#   defaults: --scenarios gadget --controllers uhci --timeout 1800, --drivers
#   libccid,ours when build/ifd-ccid.bundle exists (else libccid only)
#
# environment (written to RUN/gadget.env, which the scenario reads in the guest):
#   GADGET_SIMBANK=0      skip the 12 x 8-slot sysmoSIMBANK check
#   GADGET_CYCLES=N       unplug/replug cycles (default 3)
#   GADGET_VERBOSE=1      ccid-sim logs every CCID message
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
say() { printf '[gadget %s] %s\n' "$(date +%T)" "$*"; }
die() {
    say "ERROR: $*" >&2
    exit 2
}

case " $* " in *" -h "* | *" --help "*)
    sed -n '2,/^set -uo/p' "$0" | sed -e '/^set -uo/d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
esac
[ "$(id -u)" = 0 ] || die "run as root (the e2e guest needs it)"

WORK=${E2E_WORK_DIR:-/var/tmp/ccid-e2e}
export E2E_RUN_DIR=${E2E_RUN_DIR:-$WORK/runs/$(date +%Y%m%d-%H%M%S)-gadget}
export E2E_SCENARIOS=${E2E_SCENARIOS:-gadget}
export E2E_CONTROLLERS=${E2E_CONTROLLERS:-uhci}
export E2E_TIMEOUT=${E2E_TIMEOUT:-1800}
if [ -z "${E2E_DRIVERS:-}" ]; then
    if [ -f "$REPO/build/ifd-ccid.bundle/Contents/Info.plist" ]; then
        export E2E_DRIVERS=libccid,ours
    else
        say "no build/ifd-ccid.bundle (make bundle): testing with Debian's libccid only"
        export E2E_DRIVERS=libccid
    fi
fi

TARGET=${CARGO_TARGET_DIR:-$REPO/target}
say "building ccid-sim and the gadget kernel test (release)"
( cd "$REPO" && timeout 1200 cargo build --release -p ccid-sim --bin ccid-sim --quiet ) ||
    die "cargo build -p ccid-sim failed"
KTEST=$(cd "$REPO" && timeout 1200 cargo test --release -p ccid-sim --test gadget_kernel --no-run \
    --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    try: m = json.loads(l)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gadget_kernel":
        print(m["executable"])')
[ -n "$KTEST" ] && [ -x "$KTEST" ] || die "building the gadget_kernel test failed"

mkdir -p "$E2E_RUN_DIR/bin" || die "cannot create $E2E_RUN_DIR"
cp "$TARGET/release/ccid-sim" "$E2E_RUN_DIR/bin/ccid-sim" || die "no ccid-sim binary in $TARGET/release"
cp "$KTEST" "$E2E_RUN_DIR/bin/gadget_kernel"
{
    echo "GADGET_SIMBANK=${GADGET_SIMBANK:-1}"
    echo "GADGET_CYCLES=${GADGET_CYCLES:-3}"
    echo "GADGET_VERBOSE=${GADGET_VERBOSE:-0}"
} >"$E2E_RUN_DIR/gadget.env"
say "run directory $E2E_RUN_DIR, drivers $E2E_DRIVERS"
exec "$REPO/tests/e2e/run.sh" "$@"
