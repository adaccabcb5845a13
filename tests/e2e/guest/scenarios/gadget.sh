# shellcheck shell=bash
# Scenario "gadget": virtual readers of ccid-sim presented as real USB
# devices inside the guest (dummy_hcd + configfs + FunctionFS), found by
# pcscd through udev and opened by the driver through libusb; pcscd runs
# before any of them is plugged, so every plug is a real hotplug.
#
#   UDC 0      a one-slot reader (YubiKey 4 CCID descriptor, extended APDUs);
#              killed with kill -9 at the end
#   UDC 1      an 8-slot sysmoOCTSIM (TPDU level, T=0)
#   UDC 2..13  a sysmoSIMBANK: 12 sysmoOCTSIMs at once (GADGET_SIMBANK=1)
#   UDC 14     the kernel-level test (gadget_kernel, libusb, no pcscd)
#
# Started by tests/gadget/run.sh, which puts the ccid-sim binary and the
# gadget_kernel test in RUN/bin and the settings in RUN/gadget.env (RUN is
# two levels above $E2E_OUT). Control words go to each simulator's FIFO;
# e2e-client writes them itself (--trigger-file) when its measurement starts.

GD_RUN=$(dirname "$(dirname "${E2E_OUT:-/nonexistent/x}")")
GD_BIN=$GD_RUN/bin
GD_DATA=
GD_SIMBANK=1
GD_CYCLES=3
GD_VERBOSE=0
GD_NUM=15
GD_KTEST_UDC=dummy_udc.14
GD_KERNEL_READY=
GD_KTEST_DONE=0
GD_HOTPLUG_STUCK=0 # pcscd's hotplug thread never finished removing a reader
GD_DIR=/run/e2e/gadget
GD_SINGLE_DUMP=Yubico_Yubikey_4_CCID.txt
GD_SINGLE_ID=1050:0404
GD_OCTSIM_DUMP=sysmocom_sysmoOCTSIM.txt
GD_OCTSIM_ID=1d50:6141
GD_S="(GS-0)" # the one-slot reader's serial, as pcscd shows it in the name
GD_O="(GO-1)" # the sysmoOCTSIM's
GD_B="(GB-"   # the SIMBANK's, GB-2 .. GB-13
# the ISO 7816-4 test application of ccid-sim's cards
GD_SELECT=00A4040008F045324543434944
GD_SELECT_BAD=00A4040008F045324543434945
GD_CHECKS_SINGLE=(single_visible usb_descriptor pcsc_scan_lists atr_and_protocol apdus extended_apdus zlp_sent apdu_bench
    card_removed card_inserted apdu_after_card_insert replug_cycles apdu_after_replug)
GD_CHECKS_OCTSIM=(octsim_visible octsim_all_slots octsim_slot3_removed octsim_slot3_inserted octsim_slot_states
    octsim_unplugged two_readers_at_once)
declare -A GD_PID=()

gd_settings() {
    local k v
    GD_DATA=${E2E_TESTS:-/nonexistent}/../../../shared/ccid-data/readers
    [ -f "$GD_RUN/gadget.env" ] || return 0
    while IFS='=' read -r k v; do
        case $k in
            GADGET_SIMBANK) GD_SIMBANK=$v ;;
            GADGET_CYCLES) GD_CYCLES=$v ;;
            GADGET_VERBOSE) GD_VERBOSE=$v ;;
            GADGET_DATA) [ -n "$v" ] && GD_DATA=$v ;;
        esac
    done <"$GD_RUN/gadget.env"
}

# loads dummy_hcd (GD_NUM UDCs), libcomposite and usb_f_fs, mounts configfs
gd_kernel() {
    local t0 n
    [ -n "$GD_KERNEL_READY" ] && return "$GD_KERNEL_READY"
    t0=$(date +%s%3N)
    if step modules 60 sh -c "modprobe dummy_hcd num=$GD_NUM is_high_speed=1 && modprobe libcomposite &&
            modprobe usb_f_fs && { mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config; } &&
            ls /sys/class/udc" &&
        n=$(grep -c '^dummy_udc\.' "$DOUT/modules.txt") && [ "$n" = "$GD_NUM" ]; then
        pass gadget_modules "dummy_hcd num=$GD_NUM, libcomposite, usb_f_fs in $(($(date +%s%3N) - t0)) ms"
        GD_KERNEL_READY=0
    else
        fail gadget_modules "$(tail -1 "$DOUT/modules.txt")"
        GD_KERNEL_READY=1
    fi
    return "$GD_KERNEL_READY"
}

# gd_start NAME ARGS...: starts a simulator in the background with control
# FIFO $GD_DIR/NAME.ctl and ready file $GD_DIR/NAME.ready; waits for it
gd_start() {
    local name=$1 i
    shift
    rm -f "$GD_DIR/$name.ready"
    local extra=()
    [ "$GD_VERBOSE" = 1 ] && extra=(--verbose)
    "$GD_BIN/ccid-sim" gadget "$@" --ctl "$GD_DIR/$name.ctl" --ready-file "$GD_DIR/$name.ready" "${extra[@]}" \
        >"$DOUT/sim-$name.log" 2>&1 3>&- &
    GD_PID[$name]=$!
    for i in $(seq 300); do
        [ -f "$GD_DIR/$name.ready" ] && return 0
        kill -0 "${GD_PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    say "simulator $name did not get ready: $(tail -3 "$DOUT/sim-$name.log")"
    return 1
}

# gd_quit NAME: asks a simulator to quit; its exit status (124: killed)
gd_quit() {
    local name=$1 pid=${GD_PID[$1]:-} i
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        gd_ctl "$name" quit
        for i in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid"
            wait "$pid" 2>/dev/null
            unset "GD_PID[$name]"
            return 124
        fi
    fi
    wait "$pid"
    local rc=$?
    unset "GD_PID[$name]"
    return "$rc"
}

# gd_ctl NAME WORD: one control word to a simulator (its FIFO)
gd_ctl() { timeout 5 sh -c 'echo "$1" >"$2"' sh "$2" "$GD_DIR/$1.ctl"; }

# gd_names FILTER: the reader names containing FILTER, one per line
gd_names() {
    "$CLIENT" list --reader "$1" --timeout 5 2>/dev/null | sed -n 's/^READER //p'
}

# gd_wait_count FILTER N SECONDS: waits until N readers match FILTER; prints ms
gd_wait_count() {
    local t0 end
    t0=$(date +%s%3N)
    end=$((SECONDS + $3))
    while [ "$SECONDS" -lt "$end" ]; do
        if [ "$(gd_names "$1" | grep -c .)" = "$2" ]; then
            echo $(($(date +%s%3N) - t0))
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# pcscd's log so far, without the colours
gd_pcscd_log() { sed -e 's/\x1b\[[0-9;]*m//g' "$PCSCD_LOG"; }

# gd_slot FILTER SLOT: the name of slot SLOT (the last two digits of the name)
gd_slot() { gd_names "$1" | awk -v s="$(printf '%02d' "$2")" '$NF == s { print; exit }'; }

sc_gadget_prepare() {
    gd_settings
    GD_HOTPLUG_STUCK=0
    mkdir -p "$GD_DIR"
    gd_kernel || return
    if [ "$GD_KTEST_DONE" = 0 ]; then
        GD_KTEST_DONE=1
        # the gadget alone, driven from the host side with libusb: descriptors,
        # ZLPs, class requests, card notifications, unplug/replug, teardown
        if [ ! -x "$GD_BIN/gadget_kernel" ]; then
            fail kernel_bridge "no $GD_BIN/gadget_kernel (run tests/gadget/run.sh)"
        elif step kernel_test 120 env CCID_SIM_GADGET_UDC=$GD_KTEST_UDC RUST_BACKTRACE=1 \
            "$GD_BIN/gadget_kernel" --nocapture --test-threads=1 &&
            grep -q '^test result: ok. 2 passed' "$DOUT/kernel_test.txt" &&
            ! grep -q '^SKIP' "$DOUT/kernel_test.txt"; then
            pass kernel_bridge "2 tests: $(grep -c "^cycle" "$DOUT/kernel_test.txt") replug cycles, $(grep -o "[0-9]* data rates" "$DOUT/kernel_test.txt") from the dump"
            forward_timing kernel_test plug_to_libusb gadget_plug_to_libusb
            forward_timing kernel_test bulk_rtt_median gadget_bulk_rtt_median
        else
            fail kernel_bridge "$(grep -m1 -E 'panicked|Error|error' "$DOUT/kernel_test.txt")"
        fi
    fi
    if [ ! -x "$GD_BIN/ccid-sim" ]; then
        fail simulators_ready "no $GD_BIN/ccid-sim (run tests/gadget/run.sh)"
        return
    fi
    # set up, not plugged: pcscd starts first, then every plug is a hotplug
    if gd_start single --descriptor "$GD_DATA/$GD_SINGLE_DUMP" --udc-base 0 --serial-prefix GS- --unbound &&
        gd_start octsim --descriptor "$GD_DATA/$GD_OCTSIM_DUMP" --udc-base 1 --serial-prefix GO- --unbound; then
        pass simulators_ready "$(head -1 "$GD_DIR/single.ready"), $(head -1 "$GD_DIR/octsim.ready")"
    else
        fail simulators_ready "see sim-*.log"
    fi
}

gd_run_single() {
    local r=--reader m=$GD_S resp c ok ms
    # --- hotplug: plug -> reader listed -> card present ----------------------
    if step single_plug 40 "$CLIENT" wait-reader $r "$m" --card --trigger-file "$GD_DIR/single.ctl" \
        --trigger-text plug --timeout 30; then
        pass single_visible "$(record single_plug READER)"
        forward_timing single_plug reader_visible plug_to_reader
        forward_timing single_plug card_present plug_to_card
    else
        fail single_visible "$(tail -1 "$DOUT/single_plug.txt")"
        fail_unreported "the one-slot reader never appeared" "${GD_CHECKS_SINGLE[@]}"
        return
    fi
    if step lsusb_single 20 lsusb -v -d "$GD_SINGLE_ID" &&
        grep -q 'bInterfaceClass *11 Chip/SmartCard' "$DOUT/lsusb_single.txt" &&
        grep -q 'ChipCard Interface Descriptor' "$DOUT/lsusb_single.txt" &&
        grep -q "iSerial .*GS-0" "$DOUT/lsusb_single.txt"; then
        pass usb_descriptor "$(grep -m1 -o 'dwMaxCCIDMessageLength *[0-9]*' "$DOUT/lsusb_single.txt" | tr -s ' ')"
    else
        fail usb_descriptor
    fi
    if step pcsc_scan 20 pcsc_scan -r && grep -qF "$m" "$DOUT/pcsc_scan.txt"; then
        pass pcsc_scan_lists
    else
        fail pcsc_scan_lists
    fi
    if step status 20 "$CLIENT" status $r "$m" && [ -n "$(record status ATR)" ]; then
        pass atr_and_protocol "$(record status ATR) $(record status PROTOCOL)"
    else
        fail atr_and_protocol "$(tail -1 "$DOUT/status.txt")"
    fi
    # --- APDUs: SELECT, wrong SELECT, unknown INS, GET DATA, ECHO --------------
    if step apdus 30 "$CLIENT" apdu $r "$m" "$GD_SELECT=9000" "$GD_SELECT_BAD=6A82" 00DE000000=6D00 \
        00CA000034=9000 00CA000000=9000 80EE000005AABBCCDDEE=9000 &&
        resp=$(awk '$1 == "APDU" && $2 == "00CA000034" { print $3 }' "$DOUT/apdus.txt") &&
        [ "${#resp}" = 108 ] &&
        resp=$(awk '$1 == "APDU" && $2 == "80EE000005AABBCCDDEE" { print $3 }' "$DOUT/apdus.txt") &&
        [ "$resp" = AABBCCDDEE9000 ]; then
        pass apdus "$(grep -c '^APDU ' "$DOUT/apdus.txt") exchanges with exact answers"
    else
        fail apdus "$(tail -1 "$DOUT/apdus.txt")"
    fi
    # extended APDUs: ECHO of 500 bytes (a 512-byte CCID answer: a ZLP at
    # high speed) and of 1000 bytes, GET DATA of 1000 bytes
    local d500 d1000
    d500=$(printf '5A%.0s' $(seq 500))
    d1000=$d500$d500
    if step extended 30 "$CLIENT" apdu $r "$m" "80EE00000001F4${d500}0000=9000" "80EE00000003E8${d1000}0000=9000" \
        00CA00000003E8=9000 &&
        [ "$(awk '$1 == "APDU" { printf "%d ", length($3) / 2 }' "$DOUT/extended.txt")" = "502 1002 1002 " ] &&
        grep -q "^APDU 80EE00000001F4${d500}0000 ${d500}9000\$" "$DOUT/extended.txt"; then
        pass extended_apdus "ECHO 500 and 1000 bytes, GET DATA 1000 bytes"
    else
        fail extended_apdus "$(tail -1 "$DOUT/extended.txt")"
    fi
    # the 512-byte answer to ECHO 500 ended with a zero-length packet
    gd_ctl single stats
    sleep 1
    if grep -q 'ccidsim0 plugged .* zlp [1-9]' "$DOUT/sim-single.log"; then
        pass zlp_sent "$(grep -o 'responses [0-9]* zlp [0-9]*' "$DOUT/sim-single.log" | tail -1)"
    else
        fail zlp_sent "$(grep 'ccidsim0 plugged' "$DOUT/sim-single.log" | tail -1)"
    fi
    if step bench 120 "$CLIENT" bench $r "$m" --count "$E2E_BENCH_N" "$GD_SELECT=9000" &&
        [ -n "$(record bench COUNT)" ]; then
        pass apdu_bench "$(record bench COUNT) x SELECT"
        forward_timing bench apdu_rtt_median apdu_rtt_median
        forward_timing bench apdu_rtt_p95 apdu_rtt_p95
    else
        fail apdu_bench "$(tail -1 "$DOUT/bench.txt")"
    fi
    # --- card removal and insertion (NotifySlotChange on interrupt-IN) -------------
    if step card_remove 30 "$CLIENT" wait-card absent $r "$m" --trigger-file "$GD_DIR/single.ctl" \
        --trigger-text "remove 0 0" --timeout 20; then
        pass card_removed
        forward_timing card_remove card_removed card_removal_detect
    else
        fail card_removed "$(tail -1 "$DOUT/card_remove.txt")"
    fi
    if step card_insert 30 "$CLIENT" wait-card present $r "$m" --trigger-file "$GD_DIR/single.ctl" \
        --trigger-text "insert 0 0" --timeout 20; then
        pass card_inserted
        forward_timing card_insert card_inserted card_insertion_detect
    else
        fail card_inserted "$(tail -1 "$DOUT/card_insert.txt")"
    fi
    if step apdu_card_insert 30 "$CLIENT" apdu $r "$m" "$GD_SELECT=9000"; then
        pass apdu_after_card_insert
    else
        fail apdu_after_card_insert "$(tail -1 "$DOUT/apdu_card_insert.txt")"
    fi
    # --- unplug and replug (UDC unbind/bind) ------------------------------------------
    ok=0
    for c in $(seq "$GD_CYCLES"); do
        step "unplug_$c" 30 "$CLIENT" wait-gone $r "$m" --trigger-file "$GD_DIR/single.ctl" \
            --trigger-text unplug --timeout 20 || break
        step "replug_$c" 40 "$CLIENT" wait-reader $r "$m" --card --trigger-file "$GD_DIR/single.ctl" \
            --trigger-text plug --timeout 30 || break
        ok=$c
    done
    if [ "$ok" = "$GD_CYCLES" ]; then
        pass replug_cycles "$GD_CYCLES cycles"
        forward_timing unplug_1 reader_gone reader_unplug_detect
        forward_timing replug_1 reader_visible reader_replug_visible
        forward_timing replug_1 card_present reader_replug_card
    else
        fail replug_cycles "cycle $((ok + 1)) of $GD_CYCLES failed"
    fi
    if step apdu_replug 30 "$CLIENT" apdu $r "$m" "$GD_SELECT=9000" 00CA000010=9000; then
        pass apdu_after_replug
    else
        fail apdu_after_replug "$(tail -1 "$DOUT/apdu_replug.txt")"
    fi
}

# gd_octsim_unplugged CHECK: unplugs the sysmoOCTSIM and reports CHECK on
# its 8 readers going away. Debian's libccid 1.5.2 sometimes never finishes
# removing a multi-slot reader (its Multi_ReadProc keeps retrying a gone
# device while the slot threads wait): reported as SKIP for drivers not in
# E2E_QUIET_DRIVERS, FAIL for ours. Returns 1 when readers are left.
gd_octsim_unplugged() {
    local left
    gd_ctl octsim unplug
    if gd_wait_count "$GD_O" 0 30 >/dev/null; then
        pass "$1" "8 readers gone"
        return 0
    fi
    left=$(gd_names "$GD_O" | grep -c .)
    GD_HOTPLUG_STUCK=1
    if [[ " $E2E_QUIET_DRIVERS " == *" $DRIVER "* ]]; then
        fail "$1" "$left of 8 readers still listed 30 s after the unplug"
    else
        skip "$1" "$left of 8 readers still listed 30 s after the unplug: $DRIVER's multi-slot removal hangs"
    fi
    return 1
}

gd_run_octsim() {
    local ms name s ok bad states slot3
    # --- plug: 8 slots, 8 PC/SC readers, each with a card -----------------------------
    if step octsim_plug 40 "$CLIENT" wait-reader --reader "$GD_O" --card --trigger-file "$GD_DIR/octsim.ctl" \
        --trigger-text plug --timeout 30 && ms=$(gd_wait_count "$GD_O" 8 30); then
        pass octsim_visible "8 readers, all listed $ms ms after the first"
        forward_timing octsim_plug reader_visible octsim_plug_to_first_reader
        lsusb -v -d "$GD_OCTSIM_ID" >"$DOUT/lsusb_octsim.txt" 2>&1
    else
        fail octsim_visible "$(gd_names "$GD_O" | grep -c .) readers: $(tail -1 "$DOUT/octsim_plug.txt")"
        fail_unreported "the sysmoOCTSIM did not appear" "${GD_CHECKS_OCTSIM[@]}"
        return
    fi
    gd_names "$GD_O" >"$DOUT/octsim_readers.txt"
    # --- every slot answers (T=0 TPDUs), slots 0 and 5 interleaved --------------------
    ok=0
    bad=
    for s in 0 1 2 3 4 5 6 7; do
        name=$(gd_slot "$GD_O" "$s")
        if [ -n "$name" ] && step "octsim_slot$s" 30 "$CLIENT" apdu --reader "$name" "$GD_SELECT=9000" \
            00CA000020=9000 80EE000004DEADBEEF=9000; then
            ok=$((ok + 1))
        else
            bad="$bad $s"
        fi
    done
    if [ "$ok" = 8 ]; then pass octsim_all_slots "SELECT, GET DATA, ECHO on 8 slots"; else fail octsim_all_slots "slots$bad"; fi
    # --- slot 3: card out, card in -----------------------------------------------------
    slot3=$(gd_slot "$GD_O" 3)
    if [ -n "$slot3" ] && step octsim_remove 30 "$CLIENT" wait-card absent --reader "$slot3" \
        --trigger-file "$GD_DIR/octsim.ctl" --trigger-text "remove 0 3" --timeout 20; then
        pass octsim_slot3_removed
        forward_timing octsim_remove card_removed octsim_card_removal_detect
    else
        fail octsim_slot3_removed "$(tail -1 "$DOUT/octsim_remove.txt" 2>/dev/null)"
    fi
    # the other slots keep their cards
    states=""
    for s in 0 2 4; do
        step "octsim_state$s" 20 "$CLIENT" status --reader "$(gd_slot "$GD_O" "$s")" >/dev/null &&
            states="$states $s"
    done
    if [ "$states" = " 0 2 4" ]; then pass octsim_slot_states "slots 0 2 4 still present"; else fail octsim_slot_states "present:$states"; fi
    if [ -n "$slot3" ] && step octsim_insert 30 "$CLIENT" wait-card present --reader "$slot3" \
        --trigger-file "$GD_DIR/octsim.ctl" --trigger-text "insert 0 3" --timeout 20 &&
        step octsim_slot3_apdu 30 "$CLIENT" apdu --reader "$slot3" "$GD_SELECT=9000"; then
        pass octsim_slot3_inserted
        forward_timing octsim_insert card_inserted octsim_card_insertion_detect
    else
        fail octsim_slot3_inserted "$(tail -1 "$DOUT/octsim_insert.txt" 2>/dev/null)"
    fi
    # --- both readers unplugged, then plugged at the same instant ---------------------
    gd_ctl single unplug
    if gd_octsim_unplugged octsim_unplugged && gd_wait_count "$GD_S" 0 20 >/dev/null; then
        local t0
        t0=$(date +%s%3N)
        gd_ctl single plug
        gd_ctl octsim plug
        if gd_wait_count "$GD_S" 1 30 >/dev/null && gd_wait_count "$GD_O" 8 30 >/dev/null &&
            ms=$(($(date +%s%3N) - t0)) &&
            step both_apdus 30 "$CLIENT" apdu --reader "$GD_S" "$GD_SELECT=9000"; then
            pass two_readers_at_once "1 + 8 readers back $ms ms after both plugs"
            timing two_plugged_both_visible "$ms"
        else
            fail two_readers_at_once "$(gd_names "$GD_S" | grep -c .) + $(gd_names "$GD_O" | grep -c .) readers"
        fi
    elif reported octsim_unplugged && [ "$(gd_names "$GD_O" | grep -c .)" != 0 ]; then
        skip two_readers_at_once "the sysmoOCTSIM's readers did not go away"
    else
        fail two_readers_at_once "the one-slot reader did not go away on unplug"
    fi
}

# a sysmoSIMBANK: 12 sysmoOCTSIMs (96 slots) at once on UDCs 2..13. Every
# one enumerates; pcscd 1.9.9 has 16 reader contexts and adds a multi-slot
# reader only whole, so it takes as many 8-slot readers as fit beside the
# others and refuses the rest
gd_run_simbank() {
    local n others expected listed i tried rolled stuck=0
    gd_octsim_unplugged octsim_unplugged_again || stuck=1
    others=$(gd_names "" | grep -c .)
    expected=$(((16 - others) / 8 * 8))
    if ! gd_start simbank --descriptor "$GD_DATA/$GD_OCTSIM_DUMP" --count 12 --udc-base 2 --serial-prefix GB-; then
        fail simbank_enumerated "the 12 gadgets were not set up: $(tail -1 "$DOUT/sim-simbank.log")"
        return
    fi
    for i in $(seq 300); do
        [ "$(lsusb -d "$GD_OCTSIM_ID" 2>/dev/null | grep -c .)" -ge 12 ] && break
        sleep 0.1
    done
    lsusb >"$DOUT/lsusb_simbank.txt" 2>&1
    n=$(grep -ci "$GD_OCTSIM_ID" "$DOUT/lsusb_simbank.txt")
    if [ "$n" = 12 ]; then pass simbank_enumerated "12 sysmoOCTSIMs on 12 USB buses"; else fail simbank_enumerated "$n of 12"; fi
    # pcscd takes the devices one after the other: wait until it tried all
    # 12 and rolled back every one that did not fit
    local t0
    t0=$SECONDS
    tried=0
    rolled=0
    # (a hotplug thread still busy removing the sysmoOCTSIM takes none of them)
    while [ "$stuck" = 0 ] && [ $((SECONDS - t0)) -lt 400 ]; do
        tried=$(gd_pcscd_log | grep -a -o 'Attempting startup of .*(GB-[0-9]*) [0-9]* 00 using' |
            grep -o '(GB-[0-9]*)' | sort -u | grep -c .)
        rolled=$(gd_pcscd_log | grep -a -o 'Attempting shutdown of .*(GB-[0-9]*) [0-9]* 00\.' |
            grep -o '(GB-[0-9]*)' | sort -u | grep -c .)
        [ "$tried" = 12 ] && [ "$rolled" = $((12 - expected / 8)) ] && break
        sleep 2
    done
    [ "$stuck" = 0 ] && timing simbank_pcscd_settled $(((SECONDS - t0) * 1000))
    listed=$(gd_names "$GD_B" | grep -c .)
    gd_names "" >"$DOUT/simbank_readers.txt"
    if [ "$stuck" = 1 ] && [ "$tried" = 0 ]; then
        skip simbank_readers "pcscd's hotplug thread is still removing the sysmoOCTSIM"
    elif [ "$listed" = "$expected" ] && [ "$expected" -gt 0 ] &&
        step simbank_apdu 30 "$CLIENT" apdu --reader "$(gd_names "$GD_B" | tail -1)" "$GD_SELECT=9000"; then
        pass simbank_readers "$expected slots of the SIMBANK in pcscd beside $others other readers; $rolled of 12 refused (16 contexts)"
    else
        fail simbank_readers "$listed SIMBANK readers, expected $expected beside $others others ($tried tried, $rolled refused)"
    fi
    if gd_quit simbank && gd_wait_count "$GD_B" 0 30 >/dev/null; then
        pass simbank_teardown "12 gadgets removed, their readers gone"
    else
        fail simbank_teardown "$(tail -2 "$DOUT/sim-simbank.log")"
    fi
}

# a simulator killed (kill -9): FunctionFS closes, the kernel unbinds the
# gadget, pcscd drops the reader; the next simulator on that UDC removes the
# configfs tree and mount the dead one left behind
gd_run_crash() {
    local pid=${GD_PID[single]} trig=$GD_DIR/crash.trigger
    rm -f "$trig"
    mkfifo "$trig"
    if [ "$GD_HOTPLUG_STUCK" = 1 ]; then
        kill -KILL "$pid"
        skip crash_unplug "pcscd's hotplug thread is still removing the sysmoOCTSIM"
    else
        # e2e-client writes the trigger once it has seen the reader; the kill follows at once
        (read -r _ <"$trig" && kill -KILL "$pid") &
    fi
    if [ "$GD_HOTPLUG_STUCK" = 1 ]; then
        :
    elif step crash 30 "$CLIENT" wait-gone --reader "$GD_S" --trigger-file "$trig" --trigger-text kill \
        --timeout 20; then
        pass crash_unplug "reader gone after kill -9 of its simulator"
        forward_timing crash reader_gone crash_to_reader_gone
    else
        fail crash_unplug "$(tail -1 "$DOUT/crash.txt")"
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    unset "GD_PID[single]"
    mv "$DOUT/sim-single.log" "$DOUT/sim-single-killed.log"
    if [ -e /sys/kernel/config/usb_gadget/ccidsim0 ] &&
        gd_start single --descriptor "$GD_DATA/$GD_SINGLE_DUMP" --udc-base 0 --serial-prefix GS- --unbound &&
        gd_quit single && [ ! -e /sys/kernel/config/usb_gadget/ccidsim0 ] &&
        ! grep -q ' /dev/ffs-ccidsim0 ' /proc/mounts; then
        pass crash_recovery "the dead simulator's configfs tree and mount removed by the next one"
    else
        fail crash_recovery "$(tail -2 "$DOUT/sim-single.log")"
    fi
}

sc_gadget_run() {
    if [ -z "${GD_PID[single]:-}" ] || [ -z "${GD_PID[octsim]:-}" ]; then
        fail_unreported "the simulators are not running" "${GD_CHECKS_SINGLE[@]}" "${GD_CHECKS_OCTSIM[@]}"
        return
    fi
    gd_run_single
    gd_run_octsim
    gd_run_crash
    [ "$GD_SIMBANK" = 1 ] && gd_run_simbank
}

sc_gadget_cleanup() {
    local name bad=""
    for name in "${!GD_PID[@]}"; do
        gd_quit "$name" || bad="$bad $name:$?"
    done
    if [ -n "$bad" ]; then
        fail gadget_teardown "simulators exited with$bad"
    elif ls -d /sys/kernel/config/usb_gadget/ccidsim* >/dev/null 2>&1 || grep -q ' functionfs ' /proc/mounts; then
        fail gadget_teardown "left behind: $(ls -d /sys/kernel/config/usb_gadget/* 2>/dev/null | tr '\n' ' ')"
    else
        pass gadget_teardown "configfs and FunctionFS mounts clean"
    fi
}
