"""A small QMP (QEMU Machine Protocol) client over a unix socket.

Commands are synchronous; asynchronous events that arrive meanwhile are
queued and can be waited for (DEVICE_DELETED before re-adding a device with
the same id).
"""

import json
import select
import socket
import time


class QmpError(Exception):
    """A QMP command failed, or the connection broke or timed out."""


class Qmp:
    """One QMP connection. `log` receives one text line per message."""

    def __init__(self, path, timeout=30.0, log=None):
        self.log = log or (lambda line: None)
        self.events = []
        self.buf = b""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError as e:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise QmpError(f"cannot connect to QMP socket {path}: {e}") from e
                time.sleep(0.05)
        greeting = self._read(deadline)
        if "QMP" not in greeting:
            raise QmpError(f"unexpected QMP greeting {greeting}")
        self.command("qmp_capabilities")

    def fileno(self):
        return self.sock.fileno()

    def _line(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QmpError("QMP timeout")
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QmpError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("utf-8", "replace").strip()

    def _read(self, deadline):
        """Reads one message; events are queued and the next one is read."""
        while True:
            line = self._line(deadline)
            if not line:
                continue
            self.log(f"<- {line}")
            msg = json.loads(line)
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    def command(self, name, timeout=15.0, **arguments):
        """Executes a command; returns its "return" value or raises QmpError."""
        req = {"execute": name}
        if arguments:
            req["arguments"] = arguments
        text = json.dumps(req)
        self.log(f"-> {text}")
        self.sock.sendall(text.encode() + b"\n")
        reply = self._read(time.monotonic() + timeout)
        if "error" in reply:
            err = reply["error"]
            raise QmpError(f"{name}: {err.get('class')}: {err.get('desc')}")
        return reply.get("return")

    def poll_events(self):
        """Reads whatever events are pending without blocking."""
        while True:
            ready, _, _ = select.select([self.sock], [], [], 0)
            if not ready and b"\n" not in self.buf:
                return
            try:
                self._read_event_nowait()
            except QmpError:
                return

    def _read_event_nowait(self):
        if b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QmpError("QMP connection closed")
            self.buf += chunk
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            line = line.decode("utf-8", "replace").strip()
            if line:
                self.log(f"<- {line}")
                msg = json.loads(line)
                if "event" in msg:
                    self.events.append(msg)

    def wait_event(self, match, timeout=10.0):
        """Waits for a queued or future event for which match(event) holds;
        removes and returns it."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if match(ev):
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise QmpError("timeout waiting for a QMP event")
            ready, _, _ = select.select([self.sock], [], [], left)
            if ready:
                self._read_event_nowait()

    def close(self):
        self.sock.close()
