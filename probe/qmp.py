"""
QMP client
----------

A small synchronous client for the QEMU Machine Protocol over a Unix socket:
the greeting, ``qmp_capabilities``, then one command at a time. Replies are
matched by ``id``; asynchronous events that arrive in between are kept in
:attr:`QMP.events`.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from typing import Any

from buddyscope.errors import GuestGone, QMPError

__all__ = ("QMP",)


class QMP:
    """A connected, negotiated QMP session.

    :param path: the QMP Unix socket (``-qmp unix:PATH,server=on,wait=off``).
    :param timeout: seconds to wait for the greeting and for each reply.
    """

    def __init__(self, path: str, timeout: float = 10.0):
        self.path = str(path)
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._buf = b""
        self._ids = itertools.count(1)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(self.path)
            greeting = self._read_message(time.monotonic() + timeout)
            if "QMP" not in greeting:
                raise QMPError(f"{self.path} is not a QMP socket (no QMP greeting)")
            self.greeting = greeting["QMP"]
            self.execute("qmp_capabilities")
        except OSError as e:
            self.close()
            raise QMPError(f"cannot talk QMP on {self.path}: {e.strerror or e}") from None
        except QMPError:
            self.close()
            raise

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> "QMP":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPError(f"no answer on {self.path} within {self.timeout:g} s")
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                raise GuestGone(f"QMP connection {self.path} broke: {e.strerror or e}") from None
            if not chunk:
                raise GuestGone(f"QMP peer {self.path} closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError:
            raise QMPError(f"{self.path} is not a QMP socket (sent {line[:40]!r})") from None
        if not isinstance(msg, dict):
            raise QMPError(f"{self.path} is not a QMP socket (sent {line[:40]!r})")
        return msg

    def execute(self, command: str, arguments: dict[str, Any] | None = None,
                timeout: float | None = None) -> Any:
        """Run *command* and return its ``return`` value; a QMP error raises
        :class:`QMPError` with QEMU's description."""
        ident = next(self._ids)
        msg: dict[str, Any] = {"execute": command, "id": ident}
        if arguments:
            msg["arguments"] = arguments
        try:
            self._sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as e:
            raise GuestGone(f"QMP connection {self.path} broke: {e.strerror or e}") from None
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if "event" in reply:
                self.events.append(reply)
                continue
            if reply.get("id") != ident:
                continue
            if "error" in reply:
                err = reply["error"]
                raise QMPError(f"QMP {command}: {err.get('desc', err)}")
            return reply.get("return")

    def status(self) -> str:
        """The run state (``running``, ``paused``, ...) from ``query-status``."""
        return self.execute("query-status")["status"]
