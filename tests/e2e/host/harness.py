#!/usr/bin/python3
"""Host side of the e2e test (started by tests/e2e/run.sh, which prepares the
kernel, initramfs, NSS database, client and bundles).

For each USB host controller it boots one QEMU guest (TCG) with QEMU's
usb-ccid reader and emulated card, follows the guest's control port, carries
out the guest's hotplug requests through QMP, and records every check and
timing the guest reports. At the end it prints the checks and timings side by
side (controller x driver) and the closing line `N passed, M failed`.
"""

import argparse
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import Qmp, QmpError  # noqa: E402

CONTROLLERS = {"uhci": "piix3-usb-uhci", "xhci": "qemu-xhci"}

# timing name -> label in the summary table, in display order
TIMING_LABELS = [
    ("pcscd_to_reader", "pcscd start -> reader visible"),
    ("pcscd_to_card", "pcscd start -> card present"),
    ("apdu_rtt_median", "APDU round trip, median"),
    ("apdu_rtt_p95", "APDU round trip, p95"),
    ("card_removal_detect", "card removal detected"),
    ("card_insertion_detect", "card insertion detected"),
    ("reader_unplug_detect", "reader unplug -> gone"),
    ("reader_replug_visible", "reader replug -> visible"),
    ("reader_replug_card", "reader replug -> card present"),
]
XFAIL_REASON = "expected failure (known ZLP desync)"


def now():
    return time.monotonic()


class Boot:
    """One guest boot on one controller, running every driver."""

    def __init__(self, hc, opts):
        self.hc = hc
        self.o = opts
        self.dir = os.path.join(opts.run_dir, hc)
        self.out = os.path.join(self.dir, "out")
        os.makedirs(self.out, exist_ok=True)
        self.t_start = None
        self.checks = []
        self.timings = []
        self.drivers_begun = []
        self.drivers_ended = []
        self.boot = {}
        self.done_rc = None
        self.error = None
        self.pending_delete = set()
        self.logf = open(os.path.join(self.dir, "host.log"), "w", encoding="utf-8")

    # --- logging -------------------------------------------------------------
    def log(self, text, show=False):
        stamp = f"{now() - self.t_start:7.2f}" if self.t_start else "   -   "
        self.logf.write(f"[{stamp}] {text}\n")
        self.logf.flush()
        if show:
            print(f"[{self.hc} {stamp}s] {text}", flush=True)

    # --- setup ---------------------------------------------------------------
    def write_env(self):
        env = {
            "E2E_HC": self.hc,
            "E2E_OUT": self.out,
            "E2E_TESTS": self.o.tests,
            "E2E_CLIENT": self.o.client,
            "E2E_KMODS": self.o.kmods,
            "E2E_DRIVERS": " ".join(self.o.drivers),
            "E2E_SCENARIOS": " ".join(self.o.scenarios),
            "E2E_BENCH_N": str(self.o.bench),
            "E2E_LOGLEVEL": self.o.loglevel,
            "E2E_QUIET_DRIVERS": " ".join(self.o.quiet_drivers),
            "E2E_SUITE_TIMEOUT": str(max(60, self.o.timeout - 40)),
            # the boot (about 20 s) and a margin come off the limit, the rest is shared
            "E2E_DRIVER_BUDGET": str(max(60, (self.o.timeout - 90) // max(1, len(self.o.drivers)))),
        }
        for name, path in self.o.bundles.items():
            env[f"E2E_BUNDLE_{name}"] = path
        path = os.path.join(self.dir, "guest.env")
        with open(path, "w", encoding="utf-8") as f:
            for k, v in env.items():
                f.write(f"{k}={shlex.quote(v)}\n")
        return path

    def card_args(self):
        return {
            "driver": "ccid-card-emulated",
            "id": "card0",
            "backend": "certificates",
            "db": f"sql:{self.o.nssdb}",
            "cert1": "cert1",
            "cert2": "cert2",
            "cert3": "cert3",
        }

    def qemu_cmd(self, env_path):
        card = ",".join(f"{k}={v}" for k, v in self.card_args().items() if k != "driver")
        append = " ".join([
            "console=ttyS0,115200", "loglevel=4", "panic=-1", "random.trust_cpu=on", "mitigations=off",
            f"e2e.init={self.o.tests}/guest/init.sh", f"e2e.env={env_path}",
        ])
        return [
            "qemu-system-x86_64", "-name", f"ccid-e2e-{self.hc}",
            "-machine", "q35,accel=tcg", "-cpu", "max", "-smp", str(self.o.smp), "-m", str(self.o.mem),
            "-nodefaults", "-no-user-config", "-nic", "none", "-display", "none", "-vga", "none",
            "-no-reboot",
            "-kernel", self.o.kernel, "-initrd", self.o.initrd, "-append", append,
            "-chardev", f"file,id=con0,path={self.dir}/console.log", "-serial", "chardev:con0",
            "-chardev", f"socket,id=ctl0,path={self.dir}/ctl.sock,server=on,wait=off",
            "-serial", "chardev:ctl0",
            "-qmp", f"unix:{self.dir}/qmp.sock,server=on,wait=off",
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={self.out},mount_tag=e2eout,security_model=none,multidevs=remap",
            "-device", f"{CONTROLLERS[self.hc]},id={self.hc}",
            "-device", f"usb-ccid,id=ccid0,bus={self.hc}.0,port=1",
            "-device", f"ccid-card-emulated,{card}",
        ]

    # --- QMP actions ----------------------------------------------------------
    def qmp_log(self, line):
        self.log(f"qmp {line}")

    def device_del(self, dev_id):
        self.qmp.command("device_del", id=dev_id)
        self.pending_delete.add(dev_id)

    def await_deleted(self, dev_id, timeout=10.0):
        if dev_id not in self.pending_delete:
            return
        self.qmp.wait_event(
            lambda ev: ev.get("event") == "DEVICE_DELETED" and ev.get("data", {}).get("device") == dev_id,
            timeout)
        self.pending_delete.discard(dev_id)

    def note_events(self):
        for ev in list(self.qmp.events):
            if ev.get("event") == "DEVICE_DELETED":
                self.pending_delete.discard(ev.get("data", {}).get("device"))
        self.qmp.events.clear()

    def action(self, what):
        if what == "card-remove":
            self.device_del("card0")
        elif what == "card-insert":
            self.await_deleted("card0")
            self.qmp.command("device_add", **self.card_args())
        elif what == "reader-remove":
            self.device_del("ccid0")
            self.pending_delete.add("card0")  # the card goes with its reader
        elif what == "reader-add":
            self.await_deleted("ccid0")
            self.await_deleted("card0")
            # the same port again: QEMU derives the USB serial (and so the reader name) from it
            self.qmp.command("device_add", driver="usb-ccid", id="ccid0", bus=f"{self.hc}.0", port="1")
            self.qmp.command("device_add", **self.card_args())
        else:
            raise QmpError(f"unknown request {what!r}")

    # --- control port ----------------------------------------------------------
    def reply(self, text):
        self.log(f"ctl -> {text}")
        try:
            self.ctl.sendall(text.encode() + b"\n")
        except OSError as e:
            self.log(f"cannot answer the guest: {e}", show=True)

    def handle(self, line):
        self.log(f"ctl <- {line}")
        parts = line.split(" ", 6)
        if len(parts) < 2 or parts[0] != "E2E":
            return
        kind = parts[1]
        elapsed = now() - self.t_start
        if kind in ("BOOTED", "READY"):
            self.boot[kind.lower() + "_s"] = round(elapsed, 2)
            self.log(f"guest {kind.lower()} (guest uptime {parts[2] if len(parts) > 2 else '?'} s)", show=True)
        elif kind == "DRIVER" and len(parts) >= 4:
            (self.drivers_begun if parts[3] == "begin" else self.drivers_ended).append(parts[2])
            self.log(f"driver {parts[2]}: {parts[3]}", show=True)
        elif kind == "CHECK" and len(parts) >= 6:
            detail = parts[6] if len(parts) > 6 else ""
            self.checks.append({"driver": parts[2], "scenario": parts[3], "check": parts[4],
                                "status": parts[5], "detail": detail.strip()})
            self.log(f"{parts[2]:8s} {parts[4]:26s} {parts[5]:4s} {detail}".rstrip(), show=True)
        elif kind == "TIMING" and len(parts) >= 6:
            try:
                ms = float(parts[5])
            except ValueError:
                return
            self.timings.append({"driver": parts[2], "scenario": parts[3], "name": parts[4], "ms": ms})
        elif kind == "REQ" and len(parts) >= 4:
            req_id, what = parts[2], parts[3]
            t = now()
            try:
                self.action(what)
                self.reply(f"E2E ACK {req_id} ok")
                self.log(f"request {req_id} {what}: done in {(now() - t) * 1000:.0f} ms")
            except (QmpError, OSError) as e:
                self.reply(f"E2E ACK {req_id} error {e}")
                self.log(f"request {req_id} {what} failed: {e}", show=True)
        elif kind == "DONE":
            self.done_rc = parts[2] if len(parts) > 2 else "?"
            self.log(f"guest suite finished (rc {self.done_rc})", show=True)

    # --- main loop ----------------------------------------------------------------
    def run(self):
        env_path = self.write_env()
        cmd = self.qemu_cmd(env_path)
        with open(os.path.join(self.dir, "qemu-cmdline.txt"), "w", encoding="utf-8") as f:
            f.write(" ".join(shlex.quote(c) for c in cmd) + "\n")
        for sock in ("ctl.sock", "qmp.sock"):
            try:
                os.unlink(os.path.join(self.dir, sock))
            except FileNotFoundError:
                pass
        self.t_start = now()
        qlog = open(os.path.join(self.dir, "qemu.log"), "w", encoding="utf-8")
        self.proc = subprocess.Popen(cmd, stdout=qlog, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.log(f"qemu pid {self.proc.pid}: {CONTROLLERS[self.hc]}, drivers {' '.join(self.o.drivers)}",
                 show=True)
        try:
            self.ctl = self.connect_ctl()
            self.qmp = Qmp(os.path.join(self.dir, "qmp.sock"), timeout=20, log=self.qmp_log)
            self.loop()
        except (QmpError, OSError) as e:
            self.error = f"harness error: {e}"
            self.log(self.error, show=True)
        finally:
            self.stop_qemu()
            qlog.close()
        self.boot["total_s"] = round(now() - self.t_start, 2)
        self.finish()
        return self.result()

    def connect_ctl(self):
        path = os.path.join(self.dir, "ctl.sock")
        deadline = now() + 20
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return s
            except OSError:
                s.close()
                if now() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def loop(self):
        buf = b""
        boot_deadline = self.t_start + self.o.boot_timeout
        deadline = self.t_start + self.o.timeout
        while True:
            if self.proc.poll() is not None:
                self.log(f"qemu exited with status {self.proc.returncode}", show=True)
                break
            t = now()
            if "ready_s" not in self.boot and t > boot_deadline:
                self.error = f"the guest was not ready within {self.o.boot_timeout}s"
                self.log(self.error, show=True)
                break
            if t > deadline:
                self.error = f"time limit of {self.o.timeout}s for this boot reached"
                self.log(self.error, show=True)
                break
            ready, _, _ = select.select([self.ctl, self.qmp], [], [], 0.5)
            if self.qmp in ready:
                self.qmp.poll_events()
                self.note_events()
            if self.ctl in ready:
                chunk = self.ctl.recv(65536)
                if not chunk:
                    # the guest powered off: QEMU closes the chardev as it exits
                    try:
                        self.proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        pass
                    continue
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    text = line.decode("utf-8", "replace").strip("\r\x00 ")
                    if text:
                        self.handle(text)

    def stop_qemu(self):
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=20 if self.done_rc is not None else 0.1)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.log("stopping qemu", show=True)
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def finish(self):
        reason = self.error or ("the guest suite did not finish" if self.done_rc is None else "")
        for drv in self.o.drivers:
            if drv in self.drivers_ended:
                self.checks.append({"driver": drv, "scenario": "suite", "check": "suite_completed",
                                    "status": "PASS", "detail": ""})
            else:
                why = reason or "the driver's run did not finish"
                if drv not in self.drivers_begun:
                    why = f"never started: {why}"
                self.checks.append({"driver": drv, "scenario": "suite", "check": "suite_completed",
                                    "status": "FAIL", "detail": why})
        self.logf.close()

    def result(self):
        res = {"controller": self.hc, "device": CONTROLLERS[self.hc], "boot": self.boot,
               "checks": self.checks, "timings": self.timings, "error": self.error,
               "guest_rc": self.done_rc, "dir": self.dir}
        with open(os.path.join(self.dir, "results.json"), "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
        return res


# --- report ---------------------------------------------------------------------------
def effective(status, hc, drv, xfail):
    if status == "FAIL" and (hc, drv) in xfail:
        return "XFAIL"
    return status


def report(results, opts):
    cols = [(r["controller"], d) for r in results for d in opts.drivers]
    by_hc = {r["controller"]: r for r in results}
    rows = []  # (scenario, check) in first-seen order
    for r in results:
        for c in r["checks"]:
            key = (c["scenario"], c["check"])
            if key not in rows:
                rows.append(key)
    # the suite's own rows (driver install, pcscd exit, completion) go last
    rows.sort(key=lambda k: k[0] == "suite")
    cell = {}
    counts = {"PASS": 0, "FAIL": 0, "XFAIL": 0, "SKIP": 0}
    failures = []
    for r in results:
        for c in r["checks"]:
            st = effective(c["status"], r["controller"], c["driver"], opts.xfail)
            cell[(r["controller"], c["driver"], c["scenario"], c["check"])] = st
            counts[st] = counts.get(st, 0) + 1
            if st in ("FAIL", "XFAIL"):
                failures.append((st, r["controller"], c))
    w0 = max([len(f"{s}/{c}") for s, c in rows] + [36])
    wc = max(14, max((len(f"{h}/{d}") for h, d in cols), default=14) + 2)
    line = "-" * (w0 + wc * len(cols) + 1)
    out = ["", "== e2e summary: checks ==", line,
           f"{'check':{w0}s} " + "".join(f"{h + '/' + d:>{wc}s}" for h, d in cols), line]
    for s, c in rows:
        out.append(f"{s + '/' + c:{w0}s} " + "".join(
            f"{cell.get((h, d, s, c), '-'):>{wc}s}" for h, d in cols))
    out += [line, "", "== e2e summary: timings (ms) ==", line,
            f"{'timing':{w0}s} " + "".join(f"{h + '/' + d:>{wc}s}" for h, d in cols), line]
    tim = {}
    for r in results:
        for t in r["timings"]:
            tim[(r["controller"], t["driver"], t["name"])] = t["ms"]
    names = [n for n, _ in TIMING_LABELS]
    extra = sorted({t["name"] for r in results for t in r["timings"]} - set(names))
    for name, label in TIMING_LABELS + [(n, n) for n in extra]:
        vals = [tim.get((h, d, name)) for h, d in cols]
        if all(v is None for v in vals):
            continue
        out.append(f"{label:{w0}s} " + "".join(
            f"{('-' if v is None else f'{v:.1f}'):>{wc}s}" for v in vals))
    out += [line, ""]
    for r in results:
        b = r["boot"]
        out.append(f"{r['controller']} ({r['device']}): guest ready after {b.get('ready_s', '-')} s, "
                   f"boot total {b.get('total_s', '-')} s, logs {r['dir']}"
                   + (f"  [{r['error']}]" if r["error"] else ""))
    if failures:
        out.append("")
        # checks skipped for one reason ("not run: ...") are listed on one line
        groups = []
        for st, hc, c in failures:
            key = (st, hc, c["driver"], c["detail"]) if c["detail"].startswith("not run:") else None
            if key and groups and groups[-1][0] == key:
                groups[-1][1].append(c)
            else:
                groups.append((key, [c], st, hc))
        for key, cs, st, hc in groups:
            what = "FAILED" if st == "FAIL" else XFAIL_REASON
            c = cs[0]
            if len(cs) > 1:
                names = ", ".join(x["check"] for x in cs)
                out.append(f"{what}: {hc}/{c['driver']} {len(cs)} checks, {c['detail']}: {names}")
            else:
                out.append(f"{what}: {hc}/{c['driver']} {c['scenario']}/{c['check']}"
                           + (f": {c['detail']}" if c["detail"] else ""))
    out.append("")
    if counts["XFAIL"]:
        pairs = ", ".join(sorted(f"{h}/{d}" for h, d in opts.xfail))
        out.append(f"{counts['XFAIL']} expected failures ({pairs}: known ZLP desync), not counted")
    closing = f"{counts['PASS']} passed, {counts['FAIL']} failed"
    if counts["SKIP"]:
        closing += f", {counts['SKIP']} skipped"
    out.append(closing)
    text = "\n".join(out)
    print(text, flush=True)
    with open(os.path.join(opts.run_dir, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    with open(os.path.join(opts.run_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"results": results, "counts": counts}, f, indent=1)
    return counts


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--tests", required=True, help="the tests/e2e directory")
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--kmods", required=True, help="directory holding lib/modules/<version>")
    ap.add_argument("--nssdb", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--controllers", default="uhci,xhci")
    ap.add_argument("--drivers", default="libccid,ours")
    ap.add_argument("--bundle", action="append", default=[], help="NAME=DIR, for drivers other than libccid")
    ap.add_argument("--scenarios", default="qemu_reader")
    ap.add_argument("--bench", type=int, default=200)
    ap.add_argument("--loglevel", default="0x000F")
    ap.add_argument("--quiet-drivers", default="ours")
    ap.add_argument("--xfail", default="xhci:libccid", help="controller:driver pairs whose failures are expected")
    ap.add_argument("--boot-timeout", type=int, default=120)
    ap.add_argument("--timeout", type=int, default=360, help="limit for one boot, seconds")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--mem", type=int, default=1024)
    o = ap.parse_args(argv)
    ident = re.compile(r"^[a-z][a-z0-9_]*$")
    o.controllers = [c for c in o.controllers.replace(",", " ").split() if c]
    o.drivers = [d for d in o.drivers.replace(",", " ").split() if d]
    o.scenarios = [s for s in o.scenarios.replace(",", " ").split() if s]
    o.quiet_drivers = [d for d in o.quiet_drivers.replace(",", " ").split() if d]
    for c in o.controllers:
        if c not in CONTROLLERS:
            ap.error(f"unknown controller {c!r} (known: {', '.join(CONTROLLERS)})")
    for name in o.drivers + o.scenarios:
        if not ident.match(name):
            ap.error(f"bad driver or scenario name {name!r}")
    for s in o.scenarios:
        if not os.path.isfile(os.path.join(o.tests, "guest", "scenarios", f"{s}.sh")):
            ap.error(f"no scenario file guest/scenarios/{s}.sh")
    o.bundles = {}
    for b in o.bundle:
        name, _, path = b.partition("=")
        if not ident.match(name) or not path:
            ap.error(f"bad --bundle {b!r}")
        o.bundles[name] = path
    for d in o.drivers:
        if d != "libccid" and d not in o.bundles:
            ap.error(f"driver {d!r} needs --bundle {d}=DIR")
    o.xfail = {tuple(x.split(":", 1)) for x in o.xfail.replace(",", " ").split() if ":" in x}
    if o.timeout < 120:
        ap.error("--timeout must be at least 120 s")
    return o


def main(argv):
    opts = parse_args(argv)
    os.makedirs(opts.run_dir, exist_ok=True)
    results = []
    for hc in opts.controllers:
        results.append(Boot(hc, opts).run())
    counts = report(results, opts)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
