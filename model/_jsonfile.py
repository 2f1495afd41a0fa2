"""gzip'd JSON files, read and written the same way for snapshots and fixtures."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

from buddyscope.errors import BuddyscopeError
from buddyscope.model._atomic import write_atomic


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
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or e}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
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
