#!/bin/bash
# PID 1 of the e2e guest, after switch_root into the overlay of the host root.
#
# Reads the run's settings from the file named by e2e.env= on the kernel
# command line, sets up /run, the kernel modules and the writable output
# share, starts systemd-udevd (pcscd learns about USB hotplug through
# libudev), runs the test suite under a time limit, and powers the VM off.
#
# Control channel: the second serial port (/dev/ttyS1) carries "E2E ..."
# lines to the host harness and its "E2E ACK ..." answers back (fd 3).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb
read -r boot_uptime _ </proc/uptime

for word in $(</proc/cmdline); do
    case $word in e2e.env=*) E2E_ENV=${word#e2e.env=} ;; esac
done
set -a
# shellcheck source=/dev/null
. "$E2E_ENV"
set +a
export E2E_ENV

power_off() {
    sync
    echo o >/proc/sysrq-trigger
    sleep 5
    /bin/busybox poweroff -f
}
trap power_off EXIT

mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/lock /run/udev /run/pcscd /run/e2e /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev tmpfs /dev/shm
# /tmp stays the overlay of the host's: a checkout or run directory there
# must be visible in the guest at the same path
kver=$(uname -r)
mkdir -p "/lib/modules/$kver"
mount --bind "$E2E_KMODS/$kver" "/lib/modules/$kver"
mkdir -p "$E2E_OUT"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 e2eout "$E2E_OUT"

stty -F /dev/ttyS1 raw -echo -hupcl
exec 3<>/dev/ttyS1
echo "E2E BOOTED $boot_uptime" >&3
echo "[guest] init at uptime ${boot_uptime}s, kernel $kver"

hostname ccid-e2e
dmesg -n 1
/lib/systemd/systemd-udevd --daemon --resolve-names=never
# only USB matters here: load the host controller drivers directly and replay
# the USB devices' events, instead of probing every device of the machine
modprobe -a uhci_hcd xhci_pci
udevadm trigger --type=subsystems --action=add --subsystem-match=usb
udevadm trigger --type=devices --action=add --subsystem-match=usb
udevadm settle --timeout=60
read -r ready_uptime _ </proc/uptime
echo "E2E READY $ready_uptime" >&3

timeout -k 5 "$E2E_SUITE_TIMEOUT" bash "$E2E_TESTS/guest/suite.sh" 2>&1 | tee "$E2E_OUT/suite.log"
rc=${PIPESTATUS[0]}
[ "$rc" = 124 ] && echo "[guest] the suite hit its time limit (${E2E_SUITE_TIMEOUT}s)"
dmesg >"$E2E_OUT/dmesg.txt" 2>&1
echo "E2E DONE $rc" >&3
sync
umount "$E2E_OUT" 2>/dev/null
exit 0
