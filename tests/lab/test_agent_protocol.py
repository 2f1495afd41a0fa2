"""Decoding the agent's answers (agent.sh): intact bytes, or a clear error."""

import base64

import pytest

from buddyscope.errors import GuestError
from buddyscope.lab.guest import Guest


def wrap(data: bytes) -> list[str]:
    enc = base64.b64encode(data).decode()
    return [enc[i : i + 76] for i in range(0, len(enc), 76)]


def test_binary_output_survives_line_wrapping():
    out = bytes(range(256)) * 40
    lines = ["stale line", f"@@BEGIN 7 {len(out)} 3", *wrap(out), "@@SEP 7", *wrap(b"err")]
    r = Guest._decode(7, lines, 5)
    assert (r.status, r.stdout, r.stderr) == (5, out, b"err")


def test_empty_output():
    r = Guest._decode(1, ["@@BEGIN 1 0 0", "@@SEP 1"], 0)
    assert (r.stdout, r.stderr) == (b"", b"")


def test_truncated_output_is_detected():
    lines = ["@@BEGIN 2 1000 0", *wrap(b"x" * 999), "@@SEP 2"]
    with pytest.raises(GuestError, match="garbled .* got 999/0 bytes, the guest sent 1000/0"):
        Guest._decode(2, lines, 0)


def test_missing_markers():
    with pytest.raises(GuestError, match="no markers"):
        Guest._decode(3, ["@@BEGIN 2 0 0", "@@SEP 2"], 0)
