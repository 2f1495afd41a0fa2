"""A command run on a pseudo-terminal, as a user at a terminal runs it
(tests of what buddyscope draws or prints only there)."""

import os
import pty
import select
import time


def run_on_pty(args, timeout=120, env=None):
    """Run *args* (``args[0]`` a path) with stdin, stdout and stderr on a
    pseudo-terminal, from ``/`` (from a checkout, its top-level
    ``buddyscope/`` would shadow the installed package for ``-m``), with
    *env* added to the environment. Returns (everything written to the
    terminal, exit status); a run past *timeout* seconds is killed (a guard
    against a hang, not a measure)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir("/")
        os.environ.update(env or {})
        os.execv(args[0], args)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 1.0)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif os.waitpid(pid, os.WNOHANG) != (0, 0):
            break
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    return out, os.waitstatus_to_exitcode(status)
