#!/usr/bin/env python3
"""Writes seed inputs for every fuzz target into OUT/<target>/.

    python3 fuzz/seeds.py OUT [DATA_DIR]

DATA_DIR is the shared data set (default: ../shared/ccid-data beside the
repository). From it come ATRs, bulk-IN frames and T=1 blocks (traces),
class descriptors (reader dumps), and the trace and dump texts themselves.
Without it only the built-in seeds are written. Each seed is in the input
layout its target documents at the top of fuzz/fuzz_targets/<target>.rs.
"""

import os
import re
import struct
import sys

HEX = re.compile(r"(?:[0-9A-Fa-f]{2} )+[0-9A-Fa-f]{2}")

QEMU_ATR = bytes.fromhex("3B7A18000073667465206364313434")
T1_ATR = bytes.fromhex("3BDA18FF81B1FE751F030031C573C001400090000C")
TA1_ATR = bytes.fromhex("3B9613801F030031C073D61E")


def hexbytes(s):
    return bytes(int(x, 16) for x in s.split())


def lrc(b):
    x = 0
    for c in b:
        x ^= c
    return x


class Seeds:
    def __init__(self, out):
        self.out = out
        self.count = {}

    def add(self, target, data):
        d = os.path.join(self.out, target)
        os.makedirs(d, exist_ok=True)
        n = self.count.get(target, 0)
        self.count[target] = n + 1
        with open(os.path.join(d, "seed-%04d" % n), "wb") as f:
            f.write(data)


# -- descriptors from the dump text ------------------------------------------

def number(v):
    v = v.split()[0]
    return int(v, 16) if v.lower().startswith("0x") else int(float(v))


def descriptor_from_dump(lines):
    """The 54 bytes of the class descriptor a dump prints field by field."""
    f = {}
    for line in lines:
        m = re.match(r"\s+(b\w+|dw\w+|w\w+|bcdCCID):\s*(.*)$", line)
        if m and m.group(1) not in f:
            f[m.group(1)] = m.group(2).strip()
    try:
        def clock(name):
            v = f[name].split()
            return int(round(float(v[0]) * (1000 if v[1].startswith("MHz") else 1)))

        protocols = f["dwProtocols"].split()
        prot = (int(protocols[0], 16) << 16) | int(protocols[1], 16)
        major, minor = f["bcdCCID"].split(".")
        out = struct.pack(
            "<BBHBBIIIBIIBIIIIIBBHBB",
            0x36, 0x21, (int(major, 16) << 8) | int(minor, 16),
            number(f["bMaxSlotIndex"]), number(f["bVoltageSupport"]),
            prot, clock("dwDefaultClock"), clock("dwMaximumClock"),
            number(f["bNumClockSupported"]), number(f["dwDataRate"]),
            number(f["dwMaxDataRate"]), number(f["bNumDataRatesSupported"]),
            number(f["dwMaxIFSD"]), number(f["dwSynchProtocols"]),
            number(f["dwMechanical"]), number(f["dwFeatures"]),
            number(f["dwMaxCCIDMessageLength"]), number(f["bClassGetResponse"]),
            number(f["bClassEnvelope"]), number(f["wLcdLayout"]),
            number(f["bPINSupport"]), number(f["bMaxCCIDBusySlots"]),
        )
    except (KeyError, ValueError, IndexError, struct.error):
        return None
    return out if len(out) == 54 else None


def dumps(data_dir):
    """(vid, pid, descriptor) of every dump with a readable descriptor."""
    d = os.path.join(data_dir, "readers")
    if not os.path.isdir(d):
        return []
    res = []
    for name in sorted(os.listdir(d)):
        path = os.path.join(d, name)
        if not name.endswith(".txt") or not os.path.isfile(path):
            continue
        with open(path, errors="replace") as fh:
            lines = fh.read().splitlines()
        vid = pid = 0
        for line in lines:
            m = re.match(r"\s*idVendor:\s*0x([0-9A-Fa-f]+)", line)
            if m:
                vid = int(m.group(1), 16)
            m = re.match(r"\s*idProduct:\s*0x([0-9A-Fa-f]+)", line)
            if m:
                pid = int(m.group(1), 16)
        desc = descriptor_from_dump(lines)
        if desc:
            res.append((name, vid, pid, desc, "\n".join(lines) + "\n"))
    return res


# -- facts from the traces ---------------------------------------------------

def traces(data_dir):
    d = os.path.join(data_dir, "traces")
    if not os.path.isdir(d):
        return []
    res = []
    for name in sorted(os.listdir(d)):
        if name.endswith(".log"):
            with open(os.path.join(d, name), errors="replace") as fh:
                res.append((name, fh.read()))
    return res


def frames(text, marker):
    out = []
    for line in text.splitlines():
        i = line.find(marker)
        if i < 0:
            continue
        rest = line[i + len(marker):]
        rest = re.sub(r"^\s*(lun: [0-9A-Fa-f]+,|[0-9A-Fa-f]{6})\s", " ", rest)
        m = HEX.search(rest)
        if m:
            out.append(hexbytes(m.group(0)))
    return out


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    data_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "..", "shared", "ccid-data")
    s = Seeds(out)
    trs = traces(data_dir)
    dms = dumps(data_dir)

    atrs = {QEMU_ATR, T1_ATR, TA1_ATR}
    bulk_in, t1_in = [], []
    for _, text in trs:
        atrs.update(a for a in frames(text, "Card ATR:") if len(a) <= 33)
        bulk_in += frames(text, "<- ")
        t1_in += frames(text, "received:")
    # Data blocks answering IccPowerOn carry ATRs too.
    atrs.update(f[10:] for f in bulk_in
                if len(f) > 11 and f[0] == 0x80 and f[10] in (0x3B, 0x3F) and len(f) - 10 <= 33)
    atrs = sorted(atrs)
    for a in atrs:
        s.add("atr", a)

    # PPS: flags, protocol, PPS1-3, answer.
    for flags, t, p1 in [(1, 1, 0x13), (1, 0, 0x96), (0, 1, 0), (7, 1, 0x18)]:
        req = bytes([0xFF, t | (0x10 if flags & 1 else 0)] + ([p1] if flags & 1 else []))
        s.add("pps", bytes([flags, t, p1, 0, 0]) + req + bytes([lrc(req)]))

    # Negotiation: flags, PTS1-3, VID, PID, options, descriptor, rates, ATR, PPS answer.
    descs = [(vid, pid, desc) for _, vid, pid, desc, _ in dms][:200:4]
    for i, (vid, pid, desc) in enumerate(descs or [(0, 0, None)]):
        if desc is None:
            break
        atr = atrs[i % len(atrs)]
        flags = i & 1
        s.add("negotiate", bytes([flags, 0x13, 0, 0]) + struct.pack("<HH", vid, pid) + b"\0"
              + desc + bytes([2]) + struct.pack("<II", 9600, 115200)
              + bytes([len(atr)]) + atr + bytes([0xFF, 0x10 | flags, 0x13, 0xFC ^ 0x13 ^ flags]))

    # Dumps and traces as text.
    for _, _, _, _, text in dms[::10]:
        s.add("dump", text.encode())
    for _, text in trs:
        lines = text.splitlines()
        for i in range(0, min(len(lines), 400), 60):
            s.add("trace", ("\n".join(lines[i:i + 60]) + "\n").encode())
    s.add("trace", b"# ccid-trace 1\n")

    # Plist: env value, NUL, text.
    s.add("plist", b"0x0004\0<?xml version=\"1.0\"?>\n<plist version=\"1.0\"><dict>\n"
          b"<key>ifdLogLevel</key><string>0x0003</string>\n"
          b"<key>ifdDriverOptions</key><string>0x0000</string>\n"
          b"<key>ifdVendorID</key><array><string>0x08E6</string><string>0x1050</string></array>\n"
          b"<key>ifdProductID</key><array><string>0x4433</string><string>0x0407</string></array>\n"
          b"<key>ifdFriendlyName</key><array><string>Gemalto PC Twin Reader</string>"
          b"<string>Yubico YubiKey</string></array>\n"
          b"<key>CFBundleExecutable</key><string>libccid.so</string>\n</dict></plist>\n")

    for name in ["usb:08e6/4433", "usb:08e6/4433:libudev:0:/dev/bus/usb/001/002",
                 "usb:1050/0407:libusb-1.0:3:12:1", "usb:", "Gemalto PC Twin Reader"]:
        s.add("devname", name.encode())

    # T=1 engine: EDC, IFSC, IFSD, what, max, then per exchange an APDU length
    # and records (tag 0x80: PCB + INF built into a block by the harness).
    def rec_built(pcb, inf):
        return bytes([0x80, len(inf), pcb]) + inf
    s.add("t1_engine", bytes([0, 32, 254, 0, 0, 3]) + rec_built(0x00, b"\x90\x00"))
    s.add("t1_engine", bytes([1, 16, 32, 0, 0, 20]) + rec_built(0x90, b"") + rec_built(0x00, b"\x61\x10")
          + bytes([4]) + b"\x01\x02\x03\x04" + rec_built(0x40, b"\x90\x00"))
    s.add("t1_engine", bytes([0, 32, 32, 0, 0, 3]) + rec_built(0xC3, b"\x02") + rec_built(0x20, b"\x01" * 10)
          + rec_built(0x40, b"\x90\x00"))
    s.add("t1_engine", bytes([0, 32, 254, 1, 0]) + rec_built(0xE1, b"\xfe"))
    for blk in t1_in[:20]:
        s.add("t1_engine", bytes([0, 32, 32, 0, 0, 3, 0x00, len(blk)]) + blk)

    # T=0: options, max, APDU length, APDU, records (0x80: what the engine asks for).
    select = bytes.fromhex("00A4040007A0000000030000")
    s.add("t0_engine", bytes([3, 0, len(select)]) + select + b"\x80\xA4\x80" + select[5:] + b"\x80\x61\x10"
          + b"\x80\xC0\x80" + bytes(16) + b"\x90\x80\x00")
    get = bytes.fromhex("0084000008")
    s.add("t0_engine", bytes([3, 0, len(get)]) + get + b"\x80\x6C\x80\x08\x80\x84\x80" + bytes(8) + b"\x90\x80\x00")
    s.add("t0_engine", bytes([0, 0, 4]) + b"\x00\x70\x00\x00" + b"\x80\x60\x80\x90\x80\x00")

    # CCID frames from the traces.
    for f in bulk_in[:300:3]:
        s.add("ccid_response", f)
    for i in range(0, min(len(bulk_in), 120), 4):
        s.add("exchange_device", b"\xA5".join(bulk_in[i:i + 4]))
    for _, _, _, desc, _ in dms[::20]:
        s.add("ccid_descriptor", desc)

    # PIN_VERIFY_STRUCTURE / PIN_MODIFY_STRUCTURE.
    verify = bytes([0x1E, 0x1E, 0x89, 0x47, 0x04, 0x08, 0x04, 0x02, 0x01, 0x04, 0x09, 0x04, 0, 0, 0,
                    0x0D, 0, 0, 0]) + bytes.fromhex("0020000108FFFFFFFFFFFFFFFF")
    s.add("pin_structures", verify)
    modify = bytes([0x1E, 0x1E, 0x89, 0x47, 0x04, 0x00, 0x08, 0x08, 0x04, 0x03, 0x02, 0x03, 0x01,
                    0x02, 0x03, 0x09, 0x04, 0, 0, 0, 0x15, 0, 0, 0]) + bytes.fromhex(
        "0024000110" + "FF" * 16)
    s.add("pin_structures", modify)

    for t in sorted(s.count):
        print("%-16s %4d seeds" % (t, s.count[t]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
