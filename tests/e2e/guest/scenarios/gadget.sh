# shellcheck shell=bash
# Scenario "gadget": virtual readers of ccid-sim presented as real USB
# devices inside the guest (dummy_hcd + configfs + FunctionFS), found by
# pcscd through udev and opened by the driver through libusb.
#
# Started by tests/gadget/run.sh, which puts the ccid-sim binary and the
# gadget_kernel test in RUN/bin and the settings in RUN/gadget.env (RUN is
# two levels above $E2E_OUT).

GD_RUN=$(dirname "$(dirname "${E2E_OUT:-/nonexistent/x}")")
GD_BIN=$GD_RUN/bin
GD_DATA=${E2E_TESTS:-/nonexistent}/../../../shared/ccid-data/readers
GD_SIMBANK=1
GD_CYCLES=3
GD_VERBOSE=0
# UDCs: 0 one-slot reader, 1 sysmoOCTSIM, 2..13 sysmoSIMBANK, 14 kernel test
GD_NUM=15
GD_KTEST_UDC=dummy_udc.14
GD_KERNEL_READY=
GD_KTEST_DONE=0

gd_settings() {
    local k v
    [ -f "$GD_RUN/gadget.env" ] || return 0
    while IFS='=' read -r k v; do
        case $k in
            GADGET_SIMBANK) GD_SIMBANK=$v ;;
            GADGET_CYCLES) GD_CYCLES=$v ;;
            GADGET_VERBOSE) GD_VERBOSE=$v ;;
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

sc_gadget_prepare() {
    gd_settings
    gd_kernel || return
    if [ "$GD_KTEST_DONE" = 0 ]; then
        GD_KTEST_DONE=1
        # the gadget alone, driven from the host side with libusb: descriptors,
        # ZLPs, class requests, card notifications, unplug/replug, teardown
        if [ ! -x "$GD_BIN/gadget_kernel" ]; then
            fail kernel_bridge "no $GD_BIN/gadget_kernel (run tests/gadget/run.sh)"
        elif step kernel_test 120 env CCID_SIM_GADGET_UDC=$GD_KTEST_UDC RUST_BACKTRACE=1 \
            "$GD_BIN/gadget_kernel" --nocapture --test-threads=1 &&
            grep -q '^test result: ok. 1 passed' "$DOUT/kernel_test.txt" &&
            ! grep -q '^SKIP' "$DOUT/kernel_test.txt"; then
            pass kernel_bridge "$(grep -c '^cycle' "$DOUT/kernel_test.txt") replug cycles"
            forward_timing kernel_test plug_to_libusb gadget_plug_to_libusb
            forward_timing kernel_test bulk_rtt_median gadget_bulk_rtt_median
        else
            fail kernel_bridge "$(grep -m1 -E 'panicked|Error|error' "$DOUT/kernel_test.txt")"
        fi
    fi
}

sc_gadget_run() {
    :
}
