"""Chrome's CT log list (v3 JSON): RFC 6962 logs under `logs`, static-ct-api logs under `tiled_logs`.

No Django: a list named by URL is fetched through `keychest.safehttp` (checked address, one
deadline, a byte cap); the caller says whether private addresses may be reached."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keychest import safehttp

BUNDLED_LOG_LIST = Path(__file__).resolve().parent / "data" / "log_list.json"
# States in which a log still serves entries worth reading.
READABLE_STATES = ("pending", "qualified", "usable", "readonly")
# Chrome's full list is about 100 KB; a list over this size is refused rather than read.
MAX_LOG_LIST_BYTES = 4 * 1024 * 1024


class LogListError(ValueError):
    """The log list cannot be read."""


@dataclass(frozen=True)
class LogSpec:
    """One log as the list describes it."""

    log_id: str
    description: str
    operator: str
    kind: str  # "rfc6962" or "static"
    url: str  # RFC 6962 URL, or the static-ct-api monitoring prefix
    submission_url: str
    public_key: bytes
    mmd: int
    state: str

    @property
    def readable(self) -> bool:
        return self.state in READABLE_STATES


def _state(log: dict[str, Any]) -> str:
    state = log.get("state") or {}
    return next(iter(state), "") if isinstance(state, dict) else ""


def _spec(operator: str, log: dict[str, Any], kind: str) -> LogSpec:
    try:
        key = base64.b64decode(log["key"], validate=True)
        log_id = str(log["log_id"])
        if kind == "rfc6962":
            url = str(log["url"])
            submission = url
        else:
            url = str(log["monitoring_url"])
            submission = str(log["submission_url"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LogListError(f"log entry without a usable {exc}") from None
    if base64.b64encode(hashlib.sha256(key).digest()).decode() != log_id:
        raise LogListError(f"log_id of {log.get('description', log_id)!r} is not the SHA-256 of its key")
    return LogSpec(
        log_id=log_id,
        description=str(log.get("description") or log_id)[:200],
        operator=operator[:200],
        kind=kind,
        url=url if url.endswith("/") else url + "/",
        submission_url=submission,
        public_key=key,
        mmd=int(log.get("mmd") or 86400),
        state=_state(log),
    )


def parse_log_list(data: bytes | str) -> list[LogSpec]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise LogListError(f"log list is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("operators"), list):
        raise LogListError("log list has no operators")
    specs: list[LogSpec] = []
    for operator in doc["operators"]:
        name = str(operator.get("name", ""))
        for log in operator.get("logs") or []:
            specs.append(_spec(name, log, "rfc6962"))
        for log in operator.get("tiled_logs") or []:
            specs.append(_spec(name, log, "static"))
    return specs


def load_log_list(source: str | None = None, *, timeout: float = 20.0, allow_private: bool = False) -> list[LogSpec]:
    """Read the log list from a path or an http(s) URL; the bundled snapshot when `source` is empty."""
    if not source:
        return parse_log_list(BUNDLED_LOG_LIST.read_bytes())
    if source.startswith(("http://", "https://")):
        try:
            response = safehttp.get(source, allow_private=allow_private, timeout=timeout, max_bytes=MAX_LOG_LIST_BYTES)
        except safehttp.FetchError as exc:
            raise LogListError(f"cannot fetch the log list: {exc.message}") from None
        if response.status != 200:
            raise LogListError(f"cannot fetch the log list: HTTP {response.status}")
        return parse_log_list(response.body)
    try:
        return parse_log_list(Path(source).read_bytes())
    except OSError as exc:
        raise LogListError(f"cannot read the log list: {exc}") from None
