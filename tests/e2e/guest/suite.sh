#!/bin/bash
# The e2e test suite, run inside the guest by init.sh.
#
# For every driver in $E2E_DRIVERS (in order) it installs that driver's
# bundle as the only one in /usr/lib/pcsc/drivers, starts pcscd, and runs
# every scenario in $E2E_SCENARIOS against it. A scenario is a file
# scenarios/<name>.sh defining:
#
#   sc_<name>_prepare   before pcscd starts (plug devices, start simulators)
#   sc_<name>_run       the checks, with pcscd running ($PCSCD_T0 = its start)
#   sc_<name>_cleanup   optional, after pcscd stopped
#
# Results go to the host as lines on the control port (fd 3):
#   E2E DRIVER <driver> begin|end
#   E2E CHECK <driver> <scenario> <check> PASS|FAIL|SKIP [detail]
#   E2E TIMING <driver> <scenario> <name> <milliseconds>
#   E2E REQ <id> <action>          (answered by the host: E2E ACK <id> ok|error ...)
# Outputs of every command are kept in $E2E_OUT/<driver>/<step>.txt, pcscd's
# log in $E2E_OUT/pcscd-<driver>.log (and .color.log with the level colours).
set -u

OUT=$E2E_OUT
GUEST=$E2E_TESTS/guest
CLIENT=$E2E_CLIENT
CTL_DEV=/dev/ttyS1
DRIVER=none
SCENARIO=suite
DOUT=$OUT
REQ_SEQ=0
REQ_ID=0
PCSCD_PID=
PCSCD_T0=
PCSCD_LOG=
DRIVER_DEADLINE=0
FAILS=0
declare -A REPORTED=()

say() { printf '[%7s] %s\n' "$(cut -d' ' -f1 /proc/uptime)" "$*"; }
ctl() { printf 'E2E %s\n' "$*" >&3; }
section() { printf '\n======== %s ========\n' "$*"; }

# --- results ---------------------------------------------------------------
result() {
    local name=$1 status=$2
    shift 2
    REPORTED["$DRIVER/$SCENARIO/$name"]=1
    [ "$status" = FAIL ] && FAILS=$((FAILS + 1))
    ctl "CHECK $DRIVER $SCENARIO $name $status $*"
    say "CHECK $name $status $*"
}
pass() { result "$1" PASS "${@:2}"; }
fail() { result "$1" FAIL "${@:2}"; }
skip() { result "$1" SKIP "${@:2}"; }
reported() { [ -n "${REPORTED["$DRIVER/$SCENARIO/$1"]:-}" ]; }
# fail_unreported REASON CHECK...: report every listed check not reported yet
fail_unreported() {
    local reason=$1 c
    shift
    for c in "$@"; do reported "$c" || fail "$c" "not run: $reason"; done
}
timing() {
    ctl "TIMING $DRIVER $SCENARIO $1 $2"
    say "TIMING $1 $2 ms"
}

# --- running commands --------------------------------------------------------
# step NAME LIMIT CMD...: runs CMD under a time limit, output in $DOUT/NAME.txt
# (fails at once when pcscd died or the driver's time budget is used up)
step() {
    local name=$1 limit=$2 rc left
    shift 2
    say "+ $*"
    if [ -n "$PCSCD_PID" ] && ! kill -0 "$PCSCD_PID" 2>/dev/null; then
        echo "not run: pcscd is not running any more" | tee "$DOUT/$name.txt"
        return 1
    fi
    if [ "$DRIVER_DEADLINE" -gt 0 ]; then
        left=$((DRIVER_DEADLINE - SECONDS))
        if [ "$left" -le 0 ]; then
            echo "not run: the time budget of ${E2E_DRIVER_BUDGET}s for driver $DRIVER is used up" |
                tee "$DOUT/$name.txt"
            return 1
        fi
        [ "$left" -lt "$limit" ] && limit=$left
    fi
    timeout -k 3 "$limit" "$@" >"$DOUT/$name.txt" 2>&1
    rc=$?
    sed -e 's/^/    /' "$DOUT/$name.txt" | head -60
    [ "$rc" = 124 ] && say "  (timed out after ${limit}s)"
    return "$rc"
}
# record STEP KEY: the rest of the first "KEY ..." line of a step's output
record() { awk -v k="$2" '$1 == k { sub(/^[^ ]+ /, ""); print; exit }' "$DOUT/$1.txt"; }
# client_timing STEP NAME: the value of "TIMING NAME <ms>" in a step's output
client_timing() { awk -v n="$2" '$1 == "TIMING" && $2 == n { print $3; exit }' "$DOUT/$1.txt"; }
# forward_timing STEP CLIENT_NAME REPORT_NAME
forward_timing() {
    local v
    v=$(client_timing "$1" "$2")
    [ -n "$v" ] && timing "$3" "$v"
}

# --- requests to the host (QMP actions) --------------------------------------
next_request() {
    REQ_SEQ=$((REQ_SEQ + 1))
    REQ_ID=$REQ_SEQ
}
# await_ack ID [LIMIT]: waits for "E2E ACK ID ok"
await_ack() {
    local id=$1 limit=${2:-30} line end
    end=$((SECONDS + limit))
    while [ "$SECONDS" -lt "$end" ]; do
        IFS= read -r -t "$((end - SECONDS + 1))" line <&3 || continue
        line=${line%$'\r'}
        case $line in
            "E2E ACK $id ok"*) return 0 ;;
            "E2E ACK $id "*)
                say "host: $line"
                return 1
                ;;
            *) [ -n "$line" ] && say "ignored from host: $line" ;;
        esac
    done
    say "no answer from the host to request $id within ${limit}s"
    return 1
}
# host_request ACTION: asks the host to do ACTION and waits for its answer
host_request() {
    next_request
    say "request $REQ_ID: $1"
    ctl "REQ $REQ_ID $1"
    await_ack "$REQ_ID"
}
# the options making e2e-client send request ACTION itself, right when its
# measurement starts; use "await_ack $REQ_ID" afterwards
trigger_args() {
    next_request
    TRIGGER=(--trigger-file "$CTL_DEV" --trigger-text "E2E REQ $REQ_ID $1")
}

# --- drivers -----------------------------------------------------------------
DRIVERS_DIR=/usr/lib/pcsc/drivers
STASH=/run/e2e/drivers
# keeps a copy of the host's libccid bundle before the drivers dir is emptied
stash_system_driver() {
    mkdir -p "$STASH/libccid"
    if [ -d "$DRIVERS_DIR/ifd-ccid.bundle" ]; then
        cp -a "$DRIVERS_DIR/ifd-ccid.bundle" "$STASH/libccid/"
    fi
}
driver_bundle() {
    local var="E2E_BUNDLE_$1"
    if [ "$1" = libccid ]; then echo "$STASH/libccid/ifd-ccid.bundle"; else echo "${!var:-}"; fi
}
# install_driver NAME: makes NAME's bundle the only driver pcscd sees
install_driver() {
    local bundle exe
    bundle=$(driver_bundle "$1")
    if [ -z "$bundle" ] || [ ! -f "$bundle/Contents/Info.plist" ]; then
        fail driver_installed "no bundle for driver $1 (${bundle:-unset})"
        return 1
    fi
    exe=$(awk '/<key>CFBundleExecutable<\/key>/ { getline; gsub(/.*<string>|<\/string>.*/, ""); print; exit }' \
        "$bundle/Contents/Info.plist")
    if [ -z "$exe" ] || [ ! -f "$bundle/Contents/Linux/$exe" ]; then
        fail driver_installed "$bundle: Contents/Linux/${exe:-?} missing"
        return 1
    fi
    rm -rf "${DRIVERS_DIR:?}"/*
    cp -a "$bundle" "$DRIVERS_DIR/"
    pass driver_installed "$(basename "$bundle")/Contents/Linux/$exe"
}

# --- pcscd -------------------------------------------------------------------
pcscd_start() {
    mkdir -p /run/e2e/reader.conf.d # empty: no serial readers from the host's config
    PCSCD_LOG=$OUT/pcscd-$DRIVER.color.log
    PCSCD_T0=$(date +%s%3N)
    # --color (with a TERM pcscd knows) marks error and critical lines, so
    # the driver's errors can be told from its debug output
    TERM=xterm LIBCCID_ifdLogLevel=$E2E_LOGLEVEL \
        pcscd --foreground --debug --apdu --color --config /run/e2e/reader.conf.d \
        >"$PCSCD_LOG" 2>&1 3>&- &
    PCSCD_PID=$!
    say "pcscd started (pid $PCSCD_PID) with driver $DRIVER"
}
pcscd_stop() {
    local i status
    if ! kill -0 "$PCSCD_PID" 2>/dev/null; then
        wait "$PCSCD_PID"
        status=$?
        fail pcscd_clean_exit "pcscd died during the run (exit status $status)"
    else
        kill -TERM "$PCSCD_PID"
        for i in $(seq 50); do
            kill -0 "$PCSCD_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$PCSCD_PID" 2>/dev/null; then
            kill -KILL "$PCSCD_PID"
            wait "$PCSCD_PID" 2>/dev/null
            fail pcscd_clean_exit "pcscd still running 5 s after SIGTERM"
        else
            wait "$PCSCD_PID"
            status=$?
            if [ "$status" = 0 ]; then pass pcscd_clean_exit; else fail pcscd_clean_exit "exit status $status"; fi
        fi
    fi
    sed -e 's/\x1b\[[0-9;]*m//g' "$PCSCD_LOG" >"$OUT/pcscd-$DRIVER.log"
    PCSCD_PID=
}
pcscd_log_lines() { wc -l <"$PCSCD_LOG"; }
# driver_error_lines FROM: error and critical lines after line FROM of the
# pcscd log that do not come from pcscd's own source files
driver_error_lines() {
    tail -n "+$(($1 + 1))" "$PCSCD_LOG" |
        grep -a -E $'\x1b\\[(35|01;31)m' |
        sed -e 's/\x1b\[[0-9;]*m//g' |
        grep -a -v -E '^[0-9]+ +(\[[0-9]+\] +)?(atrhandler|auth|configfile|debuglog|dyn_unix|eventhandler|hotplug_[a-z]+|ifdwrapper|pcscdaemon|powermgt_generic|prothandler|readerfactory|simclist|strlcpy|sys_unix|tokenparser|utils|winscard|winscard_msg|winscard_msg_srv|winscard_svc)\.[cl]:'
}

# --- main ----------------------------------------------------------------------
for f in "$GUEST"/scenarios/*.sh; do
    # shellcheck source=/dev/null
    . "$f"
done

section "versions"
uname -r
dpkg-query -W -f='${Package} ${Version}\n' pcscd libpcsclite1 libccid opensc pcsc-tools udev libcacard0 2>/dev/null
lsmod | grep -E '^(xhci|uhci|ehci|ohci)' || true
stash_system_driver

for DRIVER in $E2E_DRIVERS; do
    DOUT=$OUT/$DRIVER
    mkdir -p "$DOUT"
    section "driver $DRIVER"
    ctl "DRIVER $DRIVER begin"
    # every driver gets its own share of the boot's time, so one that hangs
    # cannot leave the next one without time
    DRIVER_DEADLINE=$((SECONDS + E2E_DRIVER_BUDGET))
    SCENARIO=suite
    if install_driver "$DRIVER"; then
        for SCENARIO in $E2E_SCENARIOS; do
            section "$DRIVER: prepare $SCENARIO"
            "sc_${SCENARIO}_prepare"
        done
        SCENARIO=suite
        pcscd_start
        for SCENARIO in $E2E_SCENARIOS; do
            section "$DRIVER: $SCENARIO"
            "sc_${SCENARIO}_run"
        done
        SCENARIO=suite
        pcscd_stop
        for SCENARIO in $E2E_SCENARIOS; do
            if declare -F "sc_${SCENARIO}_cleanup" >/dev/null; then "sc_${SCENARIO}_cleanup"; fi
        done
    fi
    SCENARIO=suite
    DRIVER_DEADLINE=0
    ctl "DRIVER $DRIVER end"
done
section "done: $FAILS failed checks"
exit "$((FAILS > 100 ? 100 : FAILS))"
