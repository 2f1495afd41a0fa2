"""
Debug info
----------

What to tell a user whose kernel's debug info drgn did not find: the
distribution package that has it, and drgn's debuginfod client, which drgn's
default search uses when ``DEBUGINFOD_URLS`` names a server.
"""

from __future__ import annotations

import os
from typing import Optional

__all__ = ("enable_debuginfod", "missing_debug_info_hint")


def enable_debuginfod(prog) -> bool:
    """Let drgn's debuginfod finder look for this kernel's debug info when
    the user configured a server (``DEBUGINFOD_URLS``); True if it will.

    drgn turns the finder off for every kernel but Fedora's once the program
    is a Linux kernel (``drgn_program_finish_set_kernel``: other servers were
    too slow); a user who set ``DEBUGINFOD_URLS`` asked for it.
    """
    if not os.environ.get("DEBUGINFOD_URLS", "").strip():
        return False
    if "debuginfod" not in prog.registered_debug_info_finders():
        return False
    enabled = prog.enabled_debug_info_finders()
    if "debuginfod" not in enabled:
        prog.set_enabled_debug_info_finders([*enabled, "debuginfod"])
    return True


def missing_debug_info_hint(release: str, vmlinux_given: bool,
                            have_debuginfod: Optional[bool] = None) -> str:
    """The second half of the one-line "no debug info" error: what to
    install or set, for kernel *release*."""
    if vmlinux_given:
        return "pass the right --vmlinux (the -dbg vmlinux of this very build)"
    if have_debuginfod is None:
        import drgn

        have_debuginfod = bool(drgn._have_debuginfod or drgn._enable_dlopen_debuginfod)
    package = (f"install linux-image-{release}-dbg (Debian; Ubuntu: linux-image-{release}-dbgsym)"
               if release and release != "?" else "install the kernel's -dbg package")
    urls = os.environ.get("DEBUGINFOD_URLS", "").strip()
    if not have_debuginfod:
        debuginfod = "this drgn was built without debuginfod"
    elif urls:
        debuginfod = f"debuginfod ({urls}) had none"
    else:
        debuginfod = ("or set DEBUGINFOD_URLS (e.g. https://debuginfod.debian.net) for drgn's "
                      "debuginfod to fetch it")
    return f"{package}, pass --vmlinux FILE, {debuginfod}"
