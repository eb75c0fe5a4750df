"""RFC 6962 / RFC 9162 Merkle tree hashing and proofs. Pure: no Django.

The ingester keeps, per log, the *compact range* of the entries it has verified: the roots of
the perfect subtrees that make up [0, size), largest first. Appending leaf hashes to it and
folding it gives the tree root at any size without keeping the leaves, which is how downloaded
entries are checked against the log's signed tree head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof does not verify, or the hashes do not add up to the signed root."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


@dataclass
class CompactRange:
    """The perfect-subtree roots covering [0, size): one per set bit of size, largest first."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.hashes) != bin(self.size).count("1") or any(len(h) != 32 for h in self.hashes):
            raise ProofError("compact range does not match its size")

    def copy(self) -> CompactRange:
        return CompactRange(self.size, list(self.hashes))

    def append(self, leaf_hash_: bytes) -> None:
        self.append_subtree(leaf_hash_, 0)

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        for h in leaf_hashes:
            self.append_subtree(h, 0)

    def append_subtree(self, subtree_hash: bytes, height: int) -> None:
        """Append the root of a perfect subtree of 2**height leaves starting at `size`."""
        if self.size & ((1 << height) - 1):
            raise ProofError("subtree is not aligned with the range")
        self.size += 1 << height
        h = subtree_hash
        level = height
        # Merge equal-sized neighbours, as carrying in binary addition.
        while (self.size >> level) & 1 == 0:
            h = node_hash(self.hashes.pop(), h)
            level += 1
        self.hashes.append(h)

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = node_hash(left, h)
        return h

    def to_json(self) -> dict[str, object]:
        return {"size": self.size, "hashes": [h.hex() for h in self.hashes]}

    @classmethod
    def from_json(cls, data: dict[str, object] | None) -> CompactRange:
        if not data:
            return cls()
        size, hashes = data.get("size"), data.get("hashes")
        if not isinstance(size, int) or not isinstance(hashes, list):
            raise ProofError("bad stored compact range")
        try:
            return cls(size, [bytes.fromhex(str(h)) for h in hashes])
        except ValueError as exc:
            raise ProofError(f"bad stored compact range: {exc}") from None


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes."""
    rng = CompactRange()
    rng.extend(leaf_hashes)
    return rng.root()


def subtree_decomposition(start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) as maximal aligned perfect subtrees: (start, height) pairs, left to right."""
    out: list[tuple[int, int]] = []
    while start < end:
        height = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while start + (1 << height) > end:
            height -= 1
        out.append((start, height))
        start += 1 << height
    return out


def compact_range_from_inclusion(
    leaf_index: int, tree_size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> CompactRange:
    """Verify an inclusion proof (RFC 9162 §2.1.3.2) and return the compact range of [0, leaf_index + 1).

    The left siblings on a leaf's path are exactly the perfect subtrees covering [0, leaf_index),
    so one verified proof lets ingestion start at any index of a log.
    """
    if leaf_index >= tree_size:
        raise ProofError("leaf index beyond the tree")
    fn, sn = leaf_index, tree_size - 1
    r = leaf
    lefts: list[bytes] = []
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            lefts.append(p)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise ProofError("inclusion proof does not match the signed root")
    return _range_with_leaf(leaf_index, lefts, leaf)


def _range_with_leaf(leaf_index: int, lefts_low_to_high: list[bytes], leaf: bytes) -> CompactRange:
    rng = CompactRange(leaf_index, list(reversed(lefts_low_to_high)))
    rng.append(leaf)
    return rng


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: raise ProofError unless the tree of size1 is a prefix of the tree of size2."""
    if size1 > size2:
        raise ProofError("first tree is larger than the second")
    if size1 == size2:
        if proof or root1 != root2:
            raise ProofError("equal sizes need equal roots and an empty proof")
        return
    if size1 == 0:
        if proof:
            raise ProofError("proof from an empty tree must be empty")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    nodes = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the first tree is itself a node of the second
        nodes.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for c in nodes[1:]:
        if sn == 0:
            raise ProofError("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != root1 or sr != root2:
        raise ProofError("consistency proof does not match the roots")


class MerkleTree:
    """An in-memory tree with every perfect-subtree hash kept, for serving proofs and tiles (the lab log)."""

    def __init__(self) -> None:
        # levels[h][i] = hash of the perfect subtree [i * 2**h, (i + 1) * 2**h)
        self.levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf_hash_: bytes) -> None:
        self.levels[0].append(leaf_hash_)
        h, idx = 0, len(self.levels[0]) - 1
        while idx & 1:
            if len(self.levels) <= h + 1:
                self.levels.append([])
            self.levels[h + 1].append(node_hash(self.levels[h][idx - 1], self.levels[h][idx]))
            h += 1
            idx >>= 1

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) with RFC 6962's split at the largest power of two."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            height = n.bit_length() - 1
            return self.levels[height][start >> height]
        k = _largest_power_of_two_below(n)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        return self.subtree(0, self.size if size is None else size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self._path(index, 0, size)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n <= 1:
            return []
        k = _largest_power_of_two_below(n)
        if m < k:
            return [*self._path(m, start, start + k), self.subtree(start + k, end)]
        return [*self._path(m - k, start + k, end), self.subtree(start, start + k)]

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        if size1 == 0 or size1 >= size2:
            return []
        return self._subproof(size1, 0, size2, True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self.subtree(start, end)]
        k = _largest_power_of_two_below(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, complete), self.subtree(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self.subtree(start, start + k)]
