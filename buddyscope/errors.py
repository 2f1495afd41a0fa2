"""Errors that reach the user as one line (the CLI prints them and exits 1)."""

from __future__ import annotations

__all__ = ("BuddyscopeError", "LabError", "GuestError", "GuestGone", "QMPError")


class BuddyscopeError(Exception):
    """Bad input or an unusable environment: the message is one line for the user."""


class LabError(BuddyscopeError):
    """The lab cannot fetch, build or boot what was asked."""


class GuestError(LabError):
    """A lab guest failed: panic at boot, boot timeout, command channel broken."""


class GuestGone(GuestError):
    """The QEMU process of a guest exited while it was in use."""


class QMPError(BuddyscopeError):
    """A QMP peer answered with an error, or is not a QMP peer."""
