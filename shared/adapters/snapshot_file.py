"""Read inventory snapshot files (raw ARM JSON) from disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.domain.normalize import SnapshotError, rows_from_document


def read_snapshot(path: Path) -> list[Any]:
    """The resource rows of a snapshot file; :class:`SnapshotError` says what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM (PowerShell exports)
    except OSError as error:
        raise SnapshotError(f"cannot read snapshot {path}: {error.strerror or error}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise SnapshotError(
            f"snapshot {path} is not valid JSON: {error.msg} at line {error.lineno} "
            f"column {error.colno}"
        ) from None
    return rows_from_document(document)
