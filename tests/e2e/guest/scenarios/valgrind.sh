# shellcheck shell=bash
# Scenario "valgrind": pcscd under valgrind memcheck with the driver under
# test, QEMU's usb-ccid reader with its emulated card. Not part of the
# default run (it takes minutes per driver):
#
#   tests/e2e/run.sh --scenarios valgrind --controllers uhci --timeout 1300
#
# Under TCG, pcscd under valgrind needs about 2.5 minutes to show the reader,
# a replug cycle takes 5 to 10 s and an APDU about 0.1 s, so the counts
# reached depend on the time each driver gets ((timeout - 90) / drivers):
# they are reported as reached, and the per-cycle time as a timing.
#
# Steps, each with its own check:
#   vg_pcscd_started      the suite's pcscd is replaced by one under valgrind
#   vg_device_removed_attr a client's SCardSetAttrib(TAG_IFD_DEVICE_REMOVED = 0x0FB4,
#                         [1]) on a working reader: the reader must go on
#                         answering (our driver ignores the tag while the
#                         device answers; libccid 1.5.2 drops the reader, which
#                         is reported but not counted for it)
#   vg_apdus              APDUs (SELECT, 61xx answers) in batches of VG_APDU_BATCH,
#                         up to VG_APDUS or VG_APDU_SHARE % of the time left
#   vg_replug_cycles      reader unplug/replug cycles through QMP device_del /
#                         device_add, as many as fit the rest of the driver's time
#                         budget (at most VG_CYCLES), each waiting until pcscd has
#                         dropped the reader and until it lists it again with
#                         its card; every 10th cycle also sends an APDU
#   vg_pcscd_exit         pcscd ends on SIGTERM and valgrind writes its report
#   vg_driver_invalid_access  memcheck errors (invalid read/write/free,
#                         uninitialised values, bad syscall parameters) with a
#                         frame in the driver's library: must be 0
#   vg_driver_definitely_lost bytes definitely lost that the driver's library
#                         allocated (first frame past the allocator in the
#                         library): must be 0; blocks lost inside libraries
#                         it called (libusb, libudev) are listed beside
# The figures (cycles, APDUs, per-cycle time, bytes lost in the driver and
# in the whole process) are in the check details, in
# $DOUT/valgrind-summary.txt, and the full report in $DOUT/valgrind.xml and
# $DOUT/valgrind.txt. libccid's figures are reported as SKIP details when
# not clean (it is the reference, not under test).

VG_VIDPID=08e6:4433
VG_SELECT=00A4040007A0000000790100 # SELECT of the CAC PKI applet: 61 0D
VG_CYCLES=200
VG_APDUS=10000
VG_APDU_BATCH=250
VG_APDU_SHARE=40 # per cent of the time left after start-up that APDUs may use
VG_RESERVE=90    # seconds kept for pcscd's exit under valgrind and the report
VG_CHECKS=(vg_pcscd_started vg_device_removed_attr vg_apdus vg_replug_cycles vg_pcscd_exit
    vg_driver_invalid_access vg_driver_definitely_lost)
VG_MATCH=

vg_device() {
    local d
    for d in /sys/bus/usb/devices/*; do
        if [ "$(cat "$d/idVendor" 2>/dev/null):$(cat "$d/idProduct" 2>/dev/null)" = "$VG_VIDPID" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

# vg_wait_device present|absent SECONDS
vg_wait_device() {
    local i
    for i in $(seq $(($2 * 10))); do
        if vg_device >/dev/null; then [ "$1" = present ] && return 0; else [ "$1" = absent ] && return 0; fi
        sleep 0.1
    done
    return 1
}

# the reference driver's results are reported, not counted
vg_result() {
    local check=$1 ok=$2 detail=$3
    if [ "$ok" = 1 ]; then
        pass "$check" "$detail"
    elif [ "$DRIVER" = libccid ]; then
        skip "$check" "reference driver: $detail"
    else
        fail "$check" "$detail"
    fi
}

sc_valgrind_prepare() {
    local dev
    if ! command -v valgrind >/dev/null; then
        VG_MATCH=
        return
    fi
    # a freshly plugged reader for every driver
    if vg_device >/dev/null; then
        host_request reader-remove && vg_wait_device absent 20
    fi
    host_request reader-add
    if vg_wait_device present 20 && dev=$(vg_device); then
        VG_MATCH="($(cat "$dev/serial"))"
    else
        VG_MATCH=
    fi
}

# vg_pcscd_start: pcscd under memcheck, appending to the suite's pcscd log
vg_pcscd_start() {
    TERM=xterm LIBCCID_ifdLogLevel=$E2E_LOGLEVEL \
        valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,possible \
        --errors-for-leak-kinds=definite --keep-debuginfo=yes --num-callers=40 \
        --xml=yes --xml-file="$DOUT/valgrind.xml" --log-file="$DOUT/valgrind.txt" \
        pcscd --foreground --color --config /run/e2e/reader.conf.d \
        >>"$PCSCD_LOG" 2>&1 3>&- &
    PCSCD_PID=$!
    PCSCD_T0=$(date +%s%3N)
    say "pcscd started under valgrind (pid $PCSCD_PID) with driver $DRIVER"
}

# vg_pcscd_stop: SIGTERM and wait (valgrind's leak search takes a while)
vg_pcscd_stop() {
    local i status
    kill -TERM "$PCSCD_PID" 2>/dev/null
    for i in $(seq 1200); do
        kill -0 "$PCSCD_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PCSCD_PID" 2>/dev/null; then
        kill -KILL "$PCSCD_PID"
        wait "$PCSCD_PID" 2>/dev/null
        return 1
    fi
    wait "$PCSCD_PID"
    status=$?
    [ "$status" = 0 ]
}

# the client of vg_device_removed_attr: SCardSetAttrib through libpcsclite
# with ctypes (no Python module needed)
vg_write_setattrib_client() {
    cat >/run/e2e/setattrib.py <<'EOF'
"""SCardSetAttrib(TAG_IFD_DEVICE_REMOVED, [1]) from a client, then checks
that the reader still answers. Prints KEY value lines; exit 0 when the
reader kept working."""
import ctypes
import sys
import time

MATCH, APDU = sys.argv[1], bytes.fromhex(sys.argv[2])
lib = ctypes.CDLL("libpcsclite.so.1")
LONG, DWORD = ctypes.c_long, ctypes.c_ulong


class IoRequest(ctypes.Structure):
    _fields_ = [("dwProtocol", DWORD), ("cbPciLength", DWORD)]


def rv_of(r):
    return r & 0xFFFFFFFF


def readers(ctx):
    n = DWORD(0)
    if lib.SCardListReaders(ctx, None, None, ctypes.byref(n)) != 0:
        return []
    buf = ctypes.create_string_buffer(n.value)
    if lib.SCardListReaders(ctx, None, buf, ctypes.byref(n)) != 0:
        return []
    return [r.decode() for r in buf.raw[: n.value].split(b"\0") if r]


def transmit(card, proto):
    pci = IoRequest(proto, ctypes.sizeof(IoRequest))
    out = ctypes.create_string_buffer(300)
    n = DWORD(300)
    r = lib.SCardTransmit(card, ctypes.byref(pci), APDU, DWORD(len(APDU)), None, out, ctypes.byref(n))
    return rv_of(r), out.raw[: n.value].hex().upper()


def connect(ctx, name):
    card, proto = LONG(0), DWORD(0)
    r = lib.SCardConnect(ctx, name.encode(), DWORD(2), DWORD(3), ctypes.byref(card), ctypes.byref(proto))
    return rv_of(r), card, proto.value


ctx = LONG(0)
if lib.SCardEstablishContext(DWORD(2), None, None, ctypes.byref(ctx)) != 0:
    print("ERROR no context")
    sys.exit(2)
names = [r for r in readers(ctx) if MATCH in r]
if not names:
    print("ERROR reader not listed")
    sys.exit(2)
name = names[0]
r, card, proto = connect(ctx, name)
print("CONNECT 0x%08X" % r)
if r != 0:
    sys.exit(2)
print("BEFORE 0x%08X %s" % transmit(card, proto))
value = (ctypes.c_ubyte * 1)(1)
r = rv_of(lib.SCardSetAttrib(card, DWORD(0x0FB4), value, DWORD(1)))
print("SETATTRIB 0x%08X" % r)
time.sleep(3)
after = transmit(card, proto)
print("AFTER 0x%08X %s" % after)
lib.SCardDisconnect(card, DWORD(0))
time.sleep(2)
listed = any(MATCH in n for n in readers(ctx))
print("LISTED %s" % ("yes" if listed else "no"))
r, card, proto = connect(ctx, name)
again = transmit(card, proto) if r == 0 else (r, "")
print("RECONNECT 0x%08X %s" % again)
if r == 0:
    lib.SCardDisconnect(card, DWORD(0))
ok = after[0] == 0 and after[1][-4:-2] in ("61", "90") and listed and again[0] == 0
print("RESULT %s" % ("kept" if ok else "cut-off"))
sys.exit(0 if ok else 1)
EOF
}

# the report: memcheck errors and leaks, split into the driver's and the rest
vg_write_analyser() {
    cat >/run/e2e/vg-analyse.py <<'EOF'
"""Reads valgrind's XML report; prints KEY value lines: memcheck errors
with a frame in the driver's library (an object under an *.bundle
directory), blocks definitely lost that the driver allocated itself (the
first frame past the allocator is in the driver), blocks lost that a
library called by the driver allocated (libusb, libudev), and the same
totals for the whole process."""
import sys
import xml.etree.ElementTree as ET

ACCESS = {"InvalidRead", "InvalidWrite", "InvalidFree", "MismatchedFree", "InvalidJump",
          "InvalidMemPool", "UninitCondition", "UninitValue", "SyscallParam", "Overlap",
          "FishyValue", "ClientCheck"}
root = ET.parse(sys.argv[1]).getroot()
c = {"driver_invalid": 0, "all_invalid": 0, "driver_lost_bytes": 0, "driver_lost_blocks": 0,
     "below_driver_lost_bytes": 0, "all_lost_bytes": 0, "driver_possibly_bytes": 0,
     "all_possibly_bytes": 0}
first = []


def obj(f):
    return f.findtext("obj") or ""


def where(frames, n=8):
    return " < ".join("%s %s:%s" % (f.findtext("fn") or "?", f.findtext("file") or obj(f).split("/")[-1],
                                    f.findtext("line") or "?") for f in frames[:n])


for err in root.iter("error"):
    kind = err.findtext("kind", "")
    frames = err.findall("./stack/frame")
    in_driver = any(".bundle/" in obj(f) for f in frames)
    if kind in ACCESS:
        c["all_invalid"] += 1
        if in_driver:
            c["driver_invalid"] += 1
            first.append("first_invalid %s at %s" % (kind, where(frames)))
    elif kind.startswith("Leak_"):
        nbytes = int(err.findtext("./xwhat/leakedbytes", "0") or 0)
        blocks = int(err.findtext("./xwhat/leakedblocks", "0") or 0)
        # the allocating code: the first frame past valgrind's allocator
        alloc = next((f for f in frames if "vgpreload" not in obj(f)), None)
        own = alloc is not None and ".bundle/" in obj(alloc)
        if kind == "Leak_DefinitelyLost":
            c["all_lost_bytes"] += nbytes
            if in_driver and own:
                c["driver_lost_bytes"] += nbytes
                c["driver_lost_blocks"] += blocks
                first.append("first_leak %d bytes from %s" % (nbytes, where(frames)))
            elif in_driver:
                c["below_driver_lost_bytes"] += nbytes
                first.append("first_below %d bytes from %s" % (nbytes, where(frames, 6)))
        elif kind == "Leak_PossiblyLost":
            c["all_possibly_bytes"] += nbytes
            if in_driver:
                c["driver_possibly_bytes"] += nbytes
for k, v in c.items():
    print(k, v)
for f in first:
    print(f)
EOF
}

sc_valgrind_run() {
    local r="--reader" m=$VG_MATCH t0 t1 i n ok detail left per errs lost
    if ! command -v valgrind >/dev/null; then
        fail_unreported "valgrind is not installed" "${VG_CHECKS[@]}"
        return
    fi
    if [ -z "$m" ]; then
        fail_unreported "the QEMU reader is not on the USB bus" "${VG_CHECKS[@]}"
        return
    fi
    vg_write_setattrib_client
    vg_write_analyser

    # --- pcscd under valgrind instead of the suite's ----------------------------------
    kill -TERM "$PCSCD_PID" 2>/dev/null
    for i in $(seq 50); do kill -0 "$PCSCD_PID" 2>/dev/null || break; sleep 0.1; done
    wait "$PCSCD_PID" 2>/dev/null
    vg_pcscd_start
    t0=$SECONDS
    if step vg_wait_reader 240 "$CLIENT" wait-reader $r "$m" --card --t0-ms "$PCSCD_T0" --timeout 230; then
        pass vg_pcscd_started "reader and card visible after $((SECONDS - t0)) s"
        forward_timing vg_wait_reader card_present vg_pcscd_to_card
    else
        fail vg_pcscd_started "$(tail -1 "$DOUT/vg_wait_reader.txt")"
        fail_unreported "pcscd under valgrind did not show the reader" "${VG_CHECKS[@]}"
        vg_pcscd_stop
        vg_report_leaks
        vg_restore_pcscd
        return
    fi

    # --- a client says the device was removed ------------------------------------------
    if step vg_setattrib 90 python3 /run/e2e/setattrib.py "$m" "$VG_SELECT"; then
        vg_result vg_device_removed_attr 1 "SetAttrib $(record vg_setattrib SETATTRIB), then $(record vg_setattrib AFTER), reconnect $(record vg_setattrib RECONNECT)"
    else
        vg_result vg_device_removed_attr 0 "$(tr '\n' ' ' <"$DOUT/vg_setattrib.txt")"
        # a driver that dropped the reader gets it back for the rest
        host_request reader-remove && vg_wait_device absent 20
        host_request reader-add
        step vg_wait_reader_again 120 "$CLIENT" wait-reader $r "$m" --card --timeout 110
    fi

    # --- APDUs --------------------------------------------------------------------------------
    local sent=0 until
    t1=$SECONDS
    until=$((SECONDS + (DRIVER_DEADLINE - SECONDS - VG_RESERVE) * VG_APDU_SHARE / 100))
    ok=1
    while [ "$sent" -lt "$VG_APDUS" ] && [ "$SECONDS" -lt "$until" ]; do
        if step vg_apdus 300 "$CLIENT" bench $r "$m" --count "$VG_APDU_BATCH" "$VG_SELECT=61" &&
            [ "$(record vg_apdus COUNT)" = "$VG_APDU_BATCH" ]; then
            sent=$((sent + VG_APDU_BATCH))
            forward_timing vg_apdus apdu_rtt_median vg_apdu_rtt_median
        else
            ok=0
            break
        fi
    done
    if [ "$ok" = 1 ] && [ "$sent" -gt 0 ]; then
        pass vg_apdus "$sent of $VG_APDUS x SELECT in $((SECONDS - t1)) s"
    else
        vg_result vg_apdus 0 "after $sent APDUs: $(tail -1 "$DOUT/vg_apdus.txt")"
    fi
    echo "apdus $sent" >"$DOUT/valgrind-summary.txt"

    # --- unplug / replug cycles ----------------------------------------------------------------------
    n=0
    ok=1
    detail=
    t1=$SECONDS
    for i in $(seq "$VG_CYCLES"); do
        left=$((DRIVER_DEADLINE - SECONDS - VG_RESERVE))
        if [ "$n" -gt 0 ]; then
            per=$(((SECONDS - t1 + n - 1) / n))
            [ "$left" -lt $((per * 2)) ] && break
        fi
        [ "$left" -lt 30 ] && break
        trigger_args reader-remove
        if ! step vg_cycle_gone 60 "$CLIENT" wait-gone $r "$m" "${TRIGGER[@]}" --timeout 50; then
            await_ack "$REQ_ID" 5
            ok=0
            detail="cycle $i: reader not dropped: $(tail -1 "$DOUT/vg_cycle_gone.txt")"
            break
        fi
        await_ack "$REQ_ID"
        vg_wait_device absent 20
        trigger_args reader-add
        if ! step vg_cycle_back 90 "$CLIENT" wait-reader $r "$m" --card "${TRIGGER[@]}" --timeout 80; then
            await_ack "$REQ_ID" 5
            ok=0
            detail="cycle $i: reader not back: $(tail -1 "$DOUT/vg_cycle_back.txt")"
            break
        fi
        await_ack "$REQ_ID"
        # (apdu follows 61xx with GET RESPONSE: the final status is 9000)
        if [ $((i % 10)) = 0 ] && ! step vg_cycle_apdu 60 "$CLIENT" apdu $r "$m" "$VG_SELECT=9000"; then
            ok=0
            detail="cycle $i: APDU failed: $(tail -1 "$DOUT/vg_cycle_apdu.txt")"
            break
        fi
        n=$i
    done
    per=0
    [ "$n" -gt 0 ] && per=$(((SECONDS - t1) * 1000 / n))
    timing vg_replug_cycle "$per"
    if [ "$ok" = 1 ] && [ "$n" -gt 0 ]; then
        pass vg_replug_cycles "$n of $VG_CYCLES cycles in $((SECONDS - t1)) s ($per ms each)"
    else
        vg_result vg_replug_cycles 0 "${detail:-no cycle fitted the time budget}; $n cycles done"
    fi
    echo "cycles $n" >>"$DOUT/valgrind-summary.txt"

    # --- pcscd's exit and valgrind's report ------------------------------------------------------
    if vg_pcscd_stop; then
        pass vg_pcscd_exit
    else
        fail vg_pcscd_exit "pcscd under valgrind did not exit cleanly on SIGTERM"
    fi
    vg_report_leaks
    vg_restore_pcscd
}

vg_report_leaks() {
    local a=$DOUT/valgrind-analysis.txt
    if ! python3 /run/e2e/vg-analyse.py "$DOUT/valgrind.xml" >"$a" 2>&1; then
        fail_unreported "valgrind's report cannot be read: $(tail -1 "$a")" \
            vg_driver_invalid_access vg_driver_definitely_lost
        return
    fi
    cat "$a" >>"$DOUT/valgrind-summary.txt"
    vg_value() { awk -v k="$1" '$1 == k { print $2; exit }' "$a"; }
    vg_result vg_driver_invalid_access "$([ "$(vg_value driver_invalid)" = 0 ] && echo 1 || echo 0)" \
        "$(vg_value driver_invalid) in the driver, $(vg_value all_invalid) in the process$(grep -m1 '^first_invalid' "$a" | sed 's/^first_invalid/; first:/')"
    vg_result vg_driver_definitely_lost "$([ "$(vg_value driver_lost_bytes)" = 0 ] && echo 1 || echo 0)" \
        "$(vg_value driver_lost_bytes) bytes in $(vg_value driver_lost_blocks) blocks allocated by the driver; $(vg_value below_driver_lost_bytes) allocated by libraries it called$(grep -m1 '^first_below' "$a" | sed 's/^first_below [0-9]* bytes from/ (first:/; s/$/)/'); $(vg_value driver_possibly_bytes) possibly lost with a driver frame; process: $(vg_value all_lost_bytes) definitely, $(vg_value all_possibly_bytes) possibly$(grep -m1 '^first_leak' "$a" | sed 's/^first_leak/; first:/')"
}

# the suite stops "its" pcscd afterwards: give it a plain one again
vg_restore_pcscd() {
    TERM=xterm LIBCCID_ifdLogLevel=$E2E_LOGLEVEL \
        pcscd --foreground --debug --apdu --color --config /run/e2e/reader.conf.d \
        >>"$PCSCD_LOG" 2>&1 3>&- &
    PCSCD_PID=$!
    sleep 2
}
