# shellcheck shell=bash
# Scenario "qemu_reader": QEMU's own usb-ccid reader (08e6:4433, T=0, TPDU
# level) with the emulated CAC card of libcacard (three RSA-2048 keys and
# certificates from an NSS database on the host). Card and reader hotplug
# are done by the host through QMP, on request.
#
# Every driver gets a freshly plugged reader: the reader used by the previous
# driver is unplugged and plugged again before pcscd starts.

QR_VIDPID=08e6:4433
QR_ATR=3B7A18000073667465206364313434 # T=0, historical bytes "sfte cd144"
QR_SELECT_PKI=00A4040007A0000000790100 # SELECT the CAC PKI applet
QR_SELECT_CCC=00A4040C07A000000116DB00 # SELECT the card capability container
QR_READ_52=00520002020134              # READ BUFFER: 52 bytes of the tag buffer
QR_PIN=12345678                        # libcacard accepts any PIN (the NSS db has none)
QR_CHECKS=(reader_visible pcsc_scan_lists client_lists atr_and_protocol opensc_atr opensc_apdu client_apdu
    pkcs15_certificates pkcs11_sign_verify apdu_bench card_removed card_inserted apdu_after_card_insert
    reader_unplugged driver_quiet_on_unplug reader_replugged apdu_after_replug)
QR_USED=0
QR_MATCH=

qr_device() {
    local d
    for d in /sys/bus/usb/devices/*; do
        if [ "$(cat "$d/idVendor" 2>/dev/null):$(cat "$d/idProduct" 2>/dev/null)" = "$QR_VIDPID" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}
# qr_wait_device present|absent SECONDS
qr_wait_device() {
    local i
    for i in $(seq $(($2 * 10))); do
        if qr_device >/dev/null; then [ "$1" = present ] && return 0; else [ "$1" = absent ] && return 0; fi
        sleep 0.1
    done
    return 1
}

sc_qemu_reader_prepare() {
    if [ "$QR_USED" = 1 ]; then
        if host_request reader-remove && qr_wait_device absent 20 && host_request reader-add; then
            pass fresh_replug
        else
            fail fresh_replug "could not replug the reader for $DRIVER"
        fi
    fi
    local dev
    if qr_wait_device present 20 && dev=$(qr_device); then
        # pcscd puts the USB serial string (QEMU derives it from the port) in the reader name
        QR_MATCH="($(cat "$dev/serial"))"
        pass usb_enumerated "$(basename "$dev") $(cat "$dev/product" | tr ' ' _) speed=$(cat "$dev/speed")"
        timeout 10 lsusb -v -d "$QR_VIDPID" >"$DOUT/lsusb-v.txt" 2>&1
    else
        QR_MATCH=
        fail usb_enumerated "no $QR_VIDPID device in /sys/bus/usb/devices"
    fi
}

# the reader number opensc-tool and pkcs15-tool use for our reader
qr_opensc_reader() {
    timeout 20 opensc-tool -l 2>/dev/null | awk -v m="$QR_MATCH" 'index($0, m) && $1 ~ /^[0-9]+$/ { print $1; exit }'
}

qr_pkcs11_module() {
    local m
    for m in /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so /usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so; do
        [ -f "$m" ] && { echo "$m"; return; }
    done
}

sc_qemu_reader_run() {
    QR_USED=1
    if [ -z "$QR_MATCH" ]; then
        fail_unreported "the QEMU reader is not on the USB bus" "${QR_CHECKS[@]}"
        return
    fi
    local r="--reader" m=$QR_MATCH idx resp v

    # --- cold plug: pcscd start -> reader and card visible ---------------------
    if step wait_reader 60 "$CLIENT" wait-reader $r "$m" --card --t0-ms "$PCSCD_T0" --timeout 50; then
        pass reader_visible "$(record wait_reader READER)"
        forward_timing wait_reader reader_visible pcscd_to_reader
        forward_timing wait_reader card_present pcscd_to_card
    else
        # pcscd says why a driver could not open the reader
        v=$(sed -e 's/\x1b\[[0-9;]*m//g' "$PCSCD_LOG" | grep -a -m1 -E 'Open Port .* Failed|DYN_LoadLibrary|init failed' |
            sed -e 's/^[0-9]* *\[[0-9]*\] *//')
        fail reader_visible "$(tail -1 "$DOUT/wait_reader.txt")${v:+ [pcscd: $v]}"
        fail_unreported "reader not visible" "${QR_CHECKS[@]}"
        return
    fi

    # --- listing and ATR ---------------------------------------------------------
    if step pcsc_scan 20 pcsc_scan -r && grep -qF "$m" "$DOUT/pcsc_scan.txt"; then
        pass pcsc_scan_lists
    else
        fail pcsc_scan_lists
    fi
    if step client_list 20 "$CLIENT" list $r "$m"; then pass client_lists; else fail client_lists; fi
    if step status 20 "$CLIENT" status $r "$m" && [ "$(record status ATR)" = "$QR_ATR" ]; then
        pass atr_and_protocol "$(record status ATR) $(record status PROTOCOL)"
    else
        fail atr_and_protocol "ATR '$(record status ATR)' expected $QR_ATR"
    fi
    idx=$(qr_opensc_reader)
    idx=${idx:-0}
    v=$(echo "$QR_ATR" | sed -e 's/../&:/g; s/:$//' | tr 'A-F' 'a-f')
    if step opensc_atr 30 opensc-tool -r "$idx" -a && grep -qF "$v" "$DOUT/opensc_atr.txt"; then
        pass opensc_atr
    else
        fail opensc_atr
    fi

    # --- APDU round trips ----------------------------------------------------------
    if step opensc_apdu 30 opensc-tool -r "$idx" -s "$QR_SELECT_PKI" -s 00A4040000 &&
        grep -q 'SW1=0x90, SW2=0x00' "$DOUT/opensc_apdu.txt" &&
        grep -q 'SW1=0x6A, SW2=0x82' "$DOUT/opensc_apdu.txt"; then
        pass opensc_apdu "SELECT PKI 9000, SELECT empty 6A82"
    else
        fail opensc_apdu
    fi
    # SELECT (61xx -> GET RESPONSE) and a failing SELECT; then the CCC
    # applet's tag buffer read with READ BUFFER: its GET RESPONSE answer of 52
    # bytes + SW is a 64-byte CCID message, the size after which QEMU sends a
    # stray zero-length packet on xHCI; the two APDUs after it must still get
    # their own answers
    if step client_apdu 30 "$CLIENT" apdu $r "$m" "$QR_SELECT_PKI=9000" 00A4040000=6A82 \
        "$QR_SELECT_CCC=9000" "$QR_READ_52=9000" 00A4040000=6A82 "$QR_SELECT_PKI=9000" &&
        resp=$(awk -v c="$QR_READ_52" '$1 == "APDU" && $2 == c { print $3 }' "$DOUT/client_apdu.txt") &&
        [ "${#resp}" = 108 ]; then
        pass client_apdu "$(grep -c '^APDU ' "$DOUT/client_apdu.txt") exchanges, incl. a 52-byte answer"
    else
        fail client_apdu "$(tail -1 "$DOUT/client_apdu.txt")"
    fi

    # --- PKCS#15 / PKCS#11 -------------------------------------------------------------
    if step pkcs15_certs 90 pkcs15-tool --reader "$idx" --list-certificates &&
        [ "$(grep -c 'X.509 Certificate' "$DOUT/pkcs15_certs.txt")" = 3 ]; then
        pass pkcs15_certificates "3 certificates"
    else
        fail pkcs15_certificates "$(grep -c 'X.509 Certificate' "$DOUT/pkcs15_certs.txt") certificates"
    fi
    local p11 w=/run/e2e/sign-$DRIVER
    p11=$(qr_pkcs11_module)
    mkdir -p "$w"
    printf 'ccid e2e: data signed on the card by %s\n' "$DRIVER" >"$w/data"
    if step pkcs11_sign 90 pkcs11-tool --module "$p11" --login --pin "$QR_PIN" --sign --id 0001 \
        -m SHA256-RSA-PKCS -i "$w/data" -o "$w/sig" &&
        step pkcs11_read_cert 60 pkcs11-tool --module "$p11" --read-object --type cert --id 0001 -o "$w/cert.der" &&
        step pubkey 10 openssl x509 -inform DER -in "$w/cert.der" -pubkey -noout -out "$w/pub.pem" &&
        step verify 10 openssl dgst -sha256 -verify "$w/pub.pem" -signature "$w/sig" "$w/data" &&
        grep -q 'Verified OK' "$DOUT/verify.txt"; then
        pass pkcs11_sign_verify "$(stat -c %s "$w/sig")-byte RSA signature verified by openssl"
    else
        fail pkcs11_sign_verify
    fi

    # --- round-trip benchmark -------------------------------------------------------------
    if step bench 120 "$CLIENT" bench $r "$m" --count "$E2E_BENCH_N" "$QR_SELECT_PKI" &&
        resp=$(record bench APDU) && case ${resp##* } in *61??|*9000) true ;; *) false ;; esac; then
        pass apdu_bench "$(record bench COUNT) x SELECT -> ${resp##* }"
        forward_timing bench apdu_rtt_median apdu_rtt_median
        forward_timing bench apdu_rtt_p95 apdu_rtt_p95
    else
        fail apdu_bench "$(tail -1 "$DOUT/bench.txt")"
    fi

    # --- card removal and insertion (QMP device_del / device_add of the card) ---------------
    trigger_args card-remove
    if step card_remove 40 "$CLIENT" wait-card absent $r "$m" "${TRIGGER[@]}" --timeout 30; then
        await_ack "$REQ_ID"
        pass card_removed
        forward_timing card_remove card_removed card_removal_detect
    else
        await_ack "$REQ_ID" 5
        fail card_removed "$(tail -1 "$DOUT/card_remove.txt")"
    fi
    trigger_args card-insert
    if step card_insert 40 "$CLIENT" wait-card present $r "$m" "${TRIGGER[@]}" --timeout 30 &&
        [ "$(record card_insert ATR)" = "$QR_ATR" ]; then
        await_ack "$REQ_ID"
        pass card_inserted
        forward_timing card_insert card_inserted card_insertion_detect
    else
        await_ack "$REQ_ID" 5
        fail card_inserted "$(tail -1 "$DOUT/card_insert.txt")"
    fi
    if step apdu_card_insert 30 "$CLIENT" apdu $r "$m" "$QR_SELECT_PKI=9000"; then
        pass apdu_after_card_insert
    else
        fail apdu_after_card_insert "$(tail -1 "$DOUT/apdu_card_insert.txt")"
    fi

    # --- reader unplug and replug (QMP device_del / device_add of the reader) ---------------
    local mark errors
    mark=$(pcscd_log_lines)
    trigger_args reader-remove
    if step reader_remove 40 "$CLIENT" wait-gone $r "$m" "${TRIGGER[@]}" --timeout 30; then
        await_ack "$REQ_ID"
        pass reader_unplugged
        forward_timing reader_remove reader_gone reader_unplug_detect
    else
        await_ack "$REQ_ID" 5
        fail reader_unplugged "$(tail -1 "$DOUT/reader_remove.txt")"
    fi
    qr_wait_device absent 10
    sleep 1 # pcscd closes the reader after the udev event: let the driver finish its teardown
    errors=$(driver_error_lines "$mark")
    printf '%s\n' "$errors" >"$DOUT/driver_errors_on_unplug.txt"
    if [ -z "$errors" ]; then
        pass driver_quiet_on_unplug "no error or critical lines from the driver"
    elif [[ " $E2E_QUIET_DRIVERS " == *" $DRIVER "* ]]; then
        fail driver_quiet_on_unplug "$(printf '%s\n' "$errors" | wc -l) lines, first: $(printf '%s\n' "$errors" | head -1)"
    else
        skip driver_quiet_on_unplug "not required of $DRIVER: $(printf '%s\n' "$errors" | wc -l) lines"
    fi
    trigger_args reader-add
    if step reader_add 60 "$CLIENT" wait-reader $r "$m" --card "${TRIGGER[@]}" --timeout 50; then
        await_ack "$REQ_ID"
        pass reader_replugged
        forward_timing reader_add reader_visible reader_replug_visible
        forward_timing reader_add card_present reader_replug_card
    else
        await_ack "$REQ_ID" 5
        fail reader_replugged "$(tail -1 "$DOUT/reader_add.txt")"
    fi
    if step apdu_replug 30 "$CLIENT" apdu $r "$m" "$QR_SELECT_PKI=9000" 00A4040000=6A82; then
        pass apdu_after_replug
    else
        fail apdu_after_replug "$(tail -1 "$DOUT/apdu_replug.txt")"
    fi
}
