"""
Record state
------------

``record`` changes a kernel's tracing (kmem events, ``trace_clock``,
``buffer_size_kb``, ``tracing_on``, kprobe events of group ``buddyscope``) and
puts it back when it ends, also on error and Ctrl-C. A SIGKILL leaves it
changed; so before changing anything ``record`` writes a marker on the traced
machine (:data:`MARKER`, in ``/run``: gone at the next boot, as the changes
are) saying who is recording (pid, process start time, boot ID of the machine
the recorder runs on) and the tracing state found before, and removes it after
restoring. Then:

- a second ``record`` on the same tracefs while the first runs refuses,
  naming the first (its pid);
- the next ``record``, or ``buddyscope record --restore``, finds the marker of
  a recorder that is gone, restores the state it saved and deletes the
  ``buddyscope`` kprobe events.

*host* is anything with ``run(script, timeout, check)`` and ``tracefs`` (a
lab :class:`~buddyscope.lab.guest.Guest` or :class:`record.LocalHost`).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from typing import Callable, Optional

from buddyscope.errors import BuddyscopeError

__all__ = ("MARKER", "TracingInUse", "claim", "read_marker", "recover", "refuse_if_in_use",
           "release")

MARKER = "/run/buddyscope/record.json"


class TracingInUse(BuddyscopeError):
    """Another ``buddyscope record`` is tracing this kernel now."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> Optional[float]:
    """When process *pid* started; None when there is no such process or
    it is a zombie (killed, not yet reaped: it holds no tracing)."""
    import psutil

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _owner_alive(marker: dict) -> bool:
    """Whether the recorder that wrote *marker* still runs (same machine
    boot, same pid, same process start time: not a reused pid)."""
    if marker.get("boot_id") != _boot_id():
        return False
    started = _start_time(int(marker.get("pid", -1)))
    return started is not None and abs(started - float(marker.get("pid_start", 0))) < 1.0


def read_marker(host) -> Optional[dict]:
    """The marker on *host*, or None. An unreadable one is reported as
    ``{"corrupt": text}`` (a recorder killed while writing it)."""
    r = host.run(f"cat {MARKER} 2>/dev/null")
    if r.status != 0:
        return None
    try:
        marker = json.loads(r.text)
        if not isinstance(marker, dict):
            raise ValueError
        return marker
    except ValueError:
        return {"corrupt": r.text[:200]}


def _describe(marker: dict) -> str:
    return f"pid {marker.get('pid', '?')}, started {marker.get('started', '?')}"


def recover(host, log: Callable[[str], None] = lambda m: None) -> Optional[str]:
    """Put back the tracing state a killed ``record`` left on *host*; say
    what was done, or None when nothing was left. Raises
    :class:`TracingInUse` if the recorder that left it still runs."""
    from buddyscope.probe import tracing

    refuse_if_in_use(host)
    marker = read_marker(host)
    if marker is None:
        return None
    saved = marker.get("saved") if isinstance(marker.get("saved"), dict) else None
    tracing.remove_kprobes(host)
    if saved:
        tracing.restore_tracing(host, saved)
    host.run(f"rm -f {MARKER}", check=True)
    what = (f"restored the tracing state left by buddyscope record ({_describe(marker)}), "
            f"which was killed" if saved else
            "removed an unreadable marker of a killed buddyscope record and its kprobe events "
            "(its tracing state was not saved yet: nothing else had been changed)")
    log(what)
    return what


def refuse_if_in_use(host) -> None:
    """Raise :class:`TracingInUse` if a ``record`` that still runs holds
    *host*'s tracing (a cheap check before loading any debug info)."""
    from buddyscope.probe import tracing

    marker = read_marker(host)
    if marker is not None and "corrupt" not in marker and _owner_alive(marker):
        raise TracingInUse(
            f"tracing on {marker.get('tracefs', tracing.tracefs_of(host))} is in use by "
            f"buddyscope record ({_describe(marker)}): wait for it to end, or stop it")


def claim(host, saved: dict[str, str]) -> None:
    """Write the marker (refusing if one appeared since :func:`recover`)."""
    from buddyscope.probe import tracing

    pid = os.getpid()
    marker = {
        "pid": pid,
        "pid_start": _start_time(pid),
        "boot_id": _boot_id(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tracefs": tracing.tracefs_of(host),
        "kprobe_group": tracing.KPROBE_GROUP,
        "saved": saved,
    }
    text = json.dumps(marker)
    d = os.path.dirname(MARKER)
    # Written whole under a temporary name, then linked to the marker's name:
    # ln fails if the marker exists, so two recorders cannot both claim.
    tmp = f"{d}/.record.{pid}.tmp"
    r = host.run(f"mkdir -p {d} && printf '%s\\n' {shlex.quote(text)} > {tmp} && "
                 f"ln {tmp} {MARKER}; rc=$?; rm -f {tmp}; exit $rc")
    if r.status != 0:
        other = read_marker(host)
        if other is None:
            raise BuddyscopeError(f"cannot write {MARKER}: "
                                  f"{r.stderr.decode(errors='replace').strip()[-200:]}")
        raise TracingInUse(
            f"tracing on {marker['tracefs']} is in use by buddyscope record ({_describe(other)})")


def release(host) -> None:
    """Remove the marker (after the tracing state was restored)."""
    host.run(f"rm -f {MARKER}", check=True)
