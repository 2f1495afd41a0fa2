"""gzip'd JSON files, read and written the same way for snapshots and fixtures."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

from buddyscope.errors import BuddyscopeError
from buddyscope.model._atomic import write_atomic

#: The most JSON text buddyscope reads from one file, before or after gzip:
#: a recording of a busy minute is a few MB; a file claiming more is refused
#: before it is read whole (a sparse file, a gzip bomb).
MAX_JSON_BYTES = 256 * 2**20


def write_json(path: Path, obj: Any, compresslevel: int = 6) -> None:
    """Write *obj* as JSON: gzip'd, unless *path* ends in ``.json``; under a
    temporary name, renamed into place (:func:`write_atomic`)."""
    data = json.dumps(obj, separators=(",", ":")).encode()
    path = Path(path)
    if path.suffix != ".json":
        data = gzip.compress(data, compresslevel=compresslevel, mtime=0)
    write_atomic(path, data)


def read_json(path: Path, error: type[BuddyscopeError], what: str) -> Any:
    """The JSON in *path*, gzip'd or not; unreadable, truncated or non-JSON
    content raises *error* with one line naming *path* and *what* it is not."""
    path = Path(path)
    too_big = f"{path} is not a {what} (more than {MAX_JSON_BYTES >> 20} MiB of JSON)"
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or e}") from None
    if len(raw) > MAX_JSON_BYTES:
        raise error(too_big)
    if raw[:2] == b"\x1f\x8b":
        try:
            # Read in bounded steps: a few KiB of gzip can claim gigabytes.
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = d.decompress(raw, MAX_JSON_BYTES + 1)
            if len(out) > MAX_JSON_BYTES:
                del out, raw
                raise error(too_big)
            if not d.eof:
                raise EOFError("compressed file ended before the end-of-stream marker was reached")
            raw = out
        except (OSError, EOFError, zlib.error) as e:
            raise error(f"{path} is a corrupt or truncated gzip file ({e})") from None
    try:
        # What json.loads does with bytes, but the bytes are let go before
        # parsing: at 10 M PFNs they are about 100 MB of the peak.
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        del raw
        return json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise error(f"{path} is not a {what} (not JSON)") from None
    except RecursionError:
        raise error(f"{path} is not a {what} (JSON nested too deeply)") from None
