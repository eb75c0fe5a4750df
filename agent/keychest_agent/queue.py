"""An on-disk queue of result batches, so results survive restarts and outages.

Each batch is one JSON file written to a temporary name and renamed into place (atomic on POSIX),
so a crash never leaves half a batch to send. Batches are sent oldest first and deleted only after
the server accepted them.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any


class ResultQueue:
    """Batches waiting to be sent, one file each under `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.rejected = folder / "rejected"
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def put(self, results: list[dict[str, Any]]) -> Path:
        """A batch of scan results (for `POST /api/v1/agent/results`)."""
        return self.put_body("/api/v1/agent/results", {"results": results})

    def put_body(self, path: str, body: dict[str, Any]) -> Path:
        """Any report, with the API path it goes to."""
        name = f"{time.time_ns():020d}-{secrets.token_hex(4)}.json"
        temporary = self.folder / f".{name}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({**body, "path": path}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        final = self.folder / name
        os.replace(temporary, final)
        return final

    def pending(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("*.json") if p.is_file())

    def read(self, path: Path) -> dict[str, Any]:
        with open(path, encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
        return data

    def done(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def reject(self, path: Path) -> None:
        """Keep a batch the server refused as malformed aside (for the operator), never resend it."""
        self.rejected.mkdir(exist_ok=True)
        os.replace(path, self.rejected / path.name)
