"""HTTP clients for the two CT log APIs. No Django: give them a LogSpec (and whether private
addresses may be reached).

Both offer the same four operations, so the ingester does not care which API a log speaks:
`tree_head()` (signature verified), `start_range()` (the verified compact range at any index),
`fetch()` (entries of a range, in order, in parallel within the log's request budget) and
`check_prefix()` (that our compact range is a prefix of the signed tree).

Every request goes through `keychest.safehttp.Session`: a log is a remote party (and the log list
naming it may come from a URL), so its address is checked (no loopback, private or metadata
address unless private targets are allowed, also after a redirect), each request has one
deadline for all of it and a byte cap, and connections to the log are kept alive.
"""

from __future__ import annotations

import base64
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

from certificates.loglist import LogSpec
from kcproto.ctformat import (
    BadEntry,
    FormatError,
    LogEntry,
    TreeHead,
    parse_data_tile,
    parse_rfc6962_entry,
    tile_path,
    verify_checkpoint,
    verify_sth_json,
)
from kcproto.merkle import (
    CompactRange,
    compact_range_from_consistency,
    compact_range_from_inclusion,
    leaf_hash,
    node_hash,
    subtree_decomposition,
    verify_consistency,
)
from keychest import safehttp

Entry = LogEntry | BadEntry
# Far above any real answer (a get-entries batch of 1,024 entries with chains is a few MB, a data
# tile well under one), far below what would hurt a worker: KEYCHEST_CT_MAX_BYTES.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
HEADERS = {"User-Agent": "KeyChest CT monitor"}


class LogUnavailable(Exception):
    """The log did not answer usefully (429, 5xx, network, garbled transfer): back off and retry."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class LogGone(LogUnavailable):
    """The log answers 404 for its own tree head: it vanished or moved."""


class CTClient(ABC):
    """What both APIs share: the session, the budget of parallel requests, error mapping."""

    def __init__(
        self,
        spec: LogSpec,
        *,
        allow_private: bool = False,
        parallel: int = 4,
        timeout: float = 20.0,
        batch_size: int = 0,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.spec = spec
        self.session = safehttp.Session(allow_private=allow_private, max_idle=max(8, parallel))
        self.parallel = max(1, parallel)
        self.timeout = timeout  # for each request as a whole: resolve, connect, send, every read
        self.max_bytes = max_bytes
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        url = self.spec.url + path + (f"?{urlencode(params)}" if params else "")
        try:
            response = self.session.get(url, timeout=self.timeout, max_bytes=self.max_bytes, headers=HEADERS)
        except safehttp.TargetRefused as exc:
            raise LogUnavailable(f"{path}: refused: {exc.message}") from None
        except safehttp.FetchError as exc:
            raise LogUnavailable(f"{path}: {exc.message}") from None
        status = response.status
        if status == 429 or status >= 500:
            retry_after = _retry_after(response.headers.get("retry-after"))
            raise LogUnavailable(f"{path}: HTTP {status}", retry_after=retry_after, status=status)
        if status == 404:
            raise LogGone(f"{path}: HTTP 404", status=404)
        if status != 200:
            raise LogUnavailable(f"{path}: HTTP {status}", status=status)
        return response.body

    def _json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            return json.loads(self._get(path, params))
        except ValueError:
            raise LogUnavailable(f"{path}: not JSON") from None

    def _map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        if len(items) <= 1 or self.parallel == 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(self.parallel, len(items))) as pool:
            return list(pool.map(fn, items))

    @abstractmethod
    def check_prefix(self, rng: CompactRange, head: TreeHead) -> None:
        """Raise ProofError unless the tree our compact range describes is a prefix of `head`."""

    @abstractmethod
    def tree_head(self) -> TreeHead:
        """The log's current tree head, its signature verified (SignatureError otherwise)."""

    @abstractmethod
    def start_range(self, index: int, head: TreeHead) -> tuple[CompactRange, str]:
        """The compact range of [0, index), verified against `head` (ProofError otherwise), and a
        note when it had to be found another way than usual (it may then start a little before
        `index`: reading a few entries again is harmless)."""

    @abstractmethod
    def fetch(self, start: int, end: int, head: TreeHead) -> list[Entry]:
        """Entries [start, end), in order."""

    def issuer(self, fingerprint: bytes) -> bytes | None:
        return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class RFC6962Client(CTClient):
    """RFC 6962: get-sth, get-entries (server-chosen batch size), get-entry-and-proof, get-sth-consistency."""

    default_batch = 256

    def tree_head(self) -> TreeHead:
        return verify_sth_json(self.spec.public_key, self._json("ct/v1/get-sth"))

    def start_range(self, index: int, head: TreeHead) -> tuple[CompactRange, str]:
        if index == 0:
            return CompactRange(), ""
        try:
            data = self._json("ct/v1/get-entry-and-proof", {"leaf_index": index - 1, "tree_size": head.size})
        except LogGone:
            # An optional endpoint some logs leave out. get-sth-consistency is not optional for us
            # (every chunk is checked with it), and its proof carries the same subtrees.
            return self._start_from_consistency(index, head)
        try:
            leaf_input = base64.b64decode(data["leaf_input"])
            path = [base64.b64decode(h) for h in data["audit_path"]]
        except (KeyError, TypeError, ValueError):
            raise LogUnavailable("get-entry-and-proof: malformed answer") from None

        return compact_range_from_inclusion(index - 1, head.size, leaf_hash(leaf_input), path, head.root), ""

    def _start_from_consistency(self, index: int, head: TreeHead) -> tuple[CompactRange, str]:
        """Start at (or just before) `index` from a consistency proof to the signed head."""
        start = min(index, head.size - 1)  # a proof needs a smaller first tree
        if start > 0 and start & (start - 1) == 0:  # a power of two: its root is not in the proof
            start -= 1
        if start > 0 and start & (start - 1) == 0:  # it was 2 (or 1): read from the beginning
            start = 0
        note = (
            f"get-entry-and-proof answered 404: started at {start} (asked for {index}) from a consistency"
            f" proof to the signed tree head of size {head.size}"
        )
        if start == 0:
            return CompactRange(), note
        data = self._json("ct/v1/get-sth-consistency", {"first": start, "second": head.size})
        try:
            proof = [base64.b64decode(h) for h in data["consistency"]]
        except (KeyError, TypeError, ValueError):
            raise LogUnavailable("get-sth-consistency: malformed answer") from None
        return compact_range_from_consistency(start, head.size, proof, head.root), note

    def check_prefix(self, rng: CompactRange, head: TreeHead) -> None:
        if rng.size == head.size:
            verify_consistency(rng.size, head.size, rng.root(), head.root, [])
            return
        data = self._json("ct/v1/get-sth-consistency", {"first": rng.size, "second": head.size})
        try:
            proof = [base64.b64decode(h) for h in data["consistency"]]
        except (KeyError, TypeError, ValueError):
            raise LogUnavailable("get-sth-consistency: malformed answer") from None
        verify_consistency(rng.size, head.size, rng.root(), head.root, proof)

    def _fetch_range(self, bounds: tuple[int, int]) -> list[Entry]:
        start, end = bounds
        out: list[Entry] = []
        while start < end:
            data = self._json("ct/v1/get-entries", {"start": start, "end": end - 1})
            items = data.get("entries") if isinstance(data, dict) else None
            if not isinstance(items, list) or not items:
                raise LogUnavailable("get-entries: empty or malformed answer")
            items = items[: end - start]
            if len(items) < end - start:
                # A short answer is normal: it tells us the log's own batch limit.
                with self._lock:
                    if not self.batch_size or len(items) < self.batch_size:
                        self.batch_size = len(items)
            for offset, item in enumerate(items):
                out.append(_decode_rfc6962(start + offset, item))
            start += len(items)
        return out

    def fetch(self, start: int, end: int, head: TreeHead) -> list[Entry]:
        step = self.batch_size or self.default_batch
        ranges = [(s, min(end, s + step)) for s in range(start, end, step)]
        return [e for part in self._map(self._fetch_range, ranges) for e in part]


def _decode_rfc6962(index: int, item: Any) -> Entry:
    try:
        leaf_input = base64.b64decode(item["leaf_input"])
        extra = base64.b64decode(item.get("extra_data") or "")
    except (KeyError, TypeError, ValueError):
        return BadEntry(index=index, leaf_hash=None, reason="undecodable entry")
    try:
        return parse_rfc6962_entry(index, leaf_input, extra)
    except FormatError as exc:
        return BadEntry(index=index, leaf_hash=leaf_hash(leaf_input), reason=str(exc))


class StaticClient(CTClient):
    """static-ct-api (c2sp.org/static-ct-api): checkpoint, data tiles, hash tiles, issuers."""

    def __init__(self, spec: LogSpec, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self._tiles: dict[tuple[int, int, int], bytes] = {}
        self._issuers: dict[bytes, bytes] = {}

    @property
    def origin(self) -> str:
        return self.spec.submission_url.split("://", 1)[-1].rstrip("/")

    def tree_head(self) -> TreeHead:
        self._tiles.clear()
        return verify_checkpoint(self._get("checkpoint"), origin=self.origin, public_key_der=self.spec.public_key)

    def _hash_tile(self, level: int, index: int, tree_size: int) -> bytes:
        width = min(256, (tree_size >> (8 * level)) - index * 256)
        if width <= 0:
            raise LogUnavailable("hash tile beyond the tree")
        key = (level, index, width)
        if key not in self._tiles:
            data = self._get(tile_path(level, index, width))
            if len(data) != 32 * width:
                raise LogUnavailable(f"hash tile {level}/{index} has the wrong length")
            self._tiles[key] = data
        return self._tiles[key]

    def subtree_hash(self, start: int, height: int, tree_size: int) -> bytes:
        """Hash of the perfect subtree [start, start + 2**height), read from hash tiles."""
        level, rest = divmod(height, 8)
        first = start >> (8 * level)
        count = 1 << rest
        tile = self._hash_tile(level, first // 256, tree_size)
        offset = first % 256
        hashes = [tile[32 * i : 32 * i + 32] for i in range(offset, offset + count)]
        while len(hashes) > 1:
            hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def start_range(self, index: int, head: TreeHead) -> tuple[CompactRange, str]:
        rng = CompactRange()
        for start, height in subtree_decomposition(0, index):
            rng.append_subtree(self.subtree_hash(start, height, head.size), height)
        # Tiles are not signed themselves: the range is only trusted once it adds up to the root.
        self.check_prefix(rng, head)
        return rng, ""

    def check_prefix(self, rng: CompactRange, head: TreeHead) -> None:
        full = rng.copy()
        for start, height in subtree_decomposition(rng.size, head.size):
            full.append_subtree(self.subtree_hash(start, height, head.size), height)
        verify_consistency(head.size, head.size, full.root(), head.root, [])

    def _fetch_tile(self, args: tuple[int, int, int, int]) -> list[Entry]:
        tile_index, width, lo, hi = args
        data = self._get(tile_path("data", tile_index, width))
        try:
            entries = parse_data_tile(data, tile_index * 256, width)
        except FormatError as exc:
            # A cut-short tile is a transfer problem, not a bad entry: retry later.
            raise LogUnavailable(f"data tile {tile_index}: {exc}") from None
        return entries[lo:hi]

    def fetch(self, start: int, end: int, head: TreeHead) -> list[Entry]:
        jobs = []
        for tile_index in range(start // 256, (end - 1) // 256 + 1):
            first = tile_index * 256
            width = min(256, head.size - first)
            jobs.append((tile_index, width, max(start, first) - first, min(end, first + width) - first))
        return [e for part in self._map(self._fetch_tile, jobs) for e in part]

    def issuer(self, fingerprint: bytes) -> bytes | None:
        if fingerprint not in self._issuers:
            try:
                self._issuers[fingerprint] = self._get(f"issuer/{fingerprint.hex()}")
            except LogGone:
                return None
        return self._issuers[fingerprint]


def client_for(spec: LogSpec, **kwargs: Any) -> CTClient:
    return RFC6962Client(spec, **kwargs) if spec.kind == "rfc6962" else StaticClient(spec, **kwargs)
