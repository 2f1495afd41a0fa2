"""
Interactive console
-------------------

``buddyscope lab shell``: the user's terminal joined to the guest's console
(ttyS0, where ``/init`` runs a shell). Ctrl-] leaves; ``exit`` in the guest
powers it off. Without a terminal on stdin, lines are forwarded until EOF.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty

from buddyscope.lab.guest import Guest

__all__ = ("interactive_console",)

_ESCAPE = b"\x1d"  # Ctrl-]


def interactive_console(guest: Guest) -> None:
    """Relay stdin to the guest's console and the console to stdout until the
    user leaves (Ctrl-] or EOF) or the guest powers off."""
    out = sys.stdout.buffer

    def sink(data: bytes) -> None:
        with contextlib.suppress(OSError, ValueError):
            out.write(data)
            out.flush()

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    guest.console_sink(sink)
    try:
        if saved is not None:
            tty.setraw(fd)
        guest.console_write(b"\n")
        while guest.alive:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(fd, 4096)
            if not data:
                # Piped input: let the last command answer (or `exit` power
                # the guest off) before leaving.
                deadline = time.monotonic() + 10
                while guest.alive and time.monotonic() < deadline \
                        and guest.console_idle_seconds() < 1.0:
                    time.sleep(0.1)
                break
            if saved is not None and _ESCAPE in data:
                data = data[: data.index(_ESCAPE)]
                if data:
                    guest.console_write(data)
                break
            guest.console_write(data)
    finally:
        guest.console_sink(None)
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            out.write(b"\r\n")
            out.flush()
