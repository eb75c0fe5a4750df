"""Merkle hashing and proofs, including real vectors from Google's Argon2027h1 log."""

from __future__ import annotations

import base64
import hashlib

import pytest

from certificates.loglist import load_log_list
from kcproto.ctformat import SignatureError, verify_sth_json
from kcproto.merkle import (
    CompactRange,
    MerkleTree,
    ProofError,
    compact_range_from_inclusion,
    leaf_hash,
    root_of,
    subtree_decomposition,
    verify_consistency,
)

# Two real signed tree heads of Argon2027h1 and the log's consistency proof between them.
ARGON_STH1 = {
    "tree_size": 384065451,
    "timestamp": 1791095073447,
    "sha256_root_hash": "62+t2XxLmSqJnk7pxUna6EVA7+u+dotyl8q6wojifD8=",
    "tree_head_signature": "BAMARzBFAiAOhTncRJL5E4FfPVNWRYhsEeGThRG21r4e5gOi1yK0WwIhAM/2qDFMO5uJhZ/mK17c1YcSK3vIjbE9qTTc/V5z4aTu",
}
ARGON_STH2 = {
    "tree_size": 384071894,
    "timestamp": 1791095139948,
    "sha256_root_hash": "PRK7kHXyMbv9nTQAKoubWZ0KhDKtI6z/gPRWrnc+sGs=",
    "tree_head_signature": "BAMARzBFAiBtlUTOF4jid3uymYHrCs9kWDFv2uA+Z1Lt+KBfeHQd4AIhAIK+tWh1lpR54bbmL0liu/vm9IM3kSFemUSEALEW/83N",
}
ARGON_CONSISTENCY = [
    "9u3YdOZDgbN2wSbaJP7U7/84pejnGTBu/NWZd3mmvO0=",
    "qlplbDbJ35QNcAUu+Yjt5n20a9ZrFh7MCXzuIMDUy5Y=",
    "GnKudDI2CNMwvgv951u8aHtf5LK0VsGn3QXjRcw104I=",
    "Twu4yAFNF4jpxnrw6sxMJurSSgT1Vc67clwD/0TRSI0=",
    "/3mVXmJqUx3i1WtQwn2ApkNCPLyv4PXzI0m0jNuNQ2Q=",
    "E4tTksYQPO1mJmTHIPKbrasFDy5TmMAXFreOkUdsozU=",
    "cdYdgfYY96e/3/r/njenmouHyhCAJuRgxTw0G0+SbPQ=",
    "Z9x1/ZFk/cu7LKwf7aM/sxjK78pT/vECwOOHyOQiJgs=",
    "HiSQC7Ym01GaiBr6nZ/7ya16vqWcCunLY5U9myxS/Fc=",
    "GIZGmqlNtv7tam3IsJunxZMX5Q+tMcGp3s5q3IGufsk=",
    "Foz0cJyd4oKFqUV3tNSk2ZPZlEvx80VOif3jiAWzgXk=",
    "rYKbwB6vesfESl1Z6WS+j0+iyxYWbpwALp4/uo4K0u8=",
    "7US3OehJNbJCURkhajomq6/fOBeaeRq5rixbAgDE6Hk=",
    "p/TyuZ7+afBqLJBBTwHbhgDqVbBgkoqg7wo16aICLUs=",
    "eUsJwf94b3sLzRjjVFHZ3Tipbbaa1p31VHZnKpbAJOc=",
    "3JxaG+LYLt7/DBG9XpuieNRxM4Ik6yPBK3jJ069Px7c=",
    "JfHQShc8Qdq0dHFJCLhQbyiRhN0MF5a0n6cbVyctrBo=",
    "KjiTKgxN1O+q6jLLTQClBWdqRGWZi5HcK1uPJsG8jII=",
    "JGjL9a4XEaexPPyc3nmSe9C/vDV74ILWLRRtfqSqpU0=",
    "Fl7mMkWi4+OU6ANJ5lI+8WDd2y+3qKKfcf+FJhecZAs=",
    "YQDbMi+MXqTmckWgwjaMvxvEcCSNq4k2umsobJ4xPJc=",
    "NoHD/4b8CYUtVcDSafX+kjG4oR0MydtCmC9uUcc/y8I=",
    "tEv0P40KfnW9PqT0m1YNG3dVZOg2q+V26CR2k20QJ/c=",
]


def _argon_key() -> bytes:
    return next(s.public_key for s in load_log_list() if "Argon2027h1" in s.description)


def test_real_argon_tree_heads_verify_with_the_bundled_key() -> None:
    head1 = verify_sth_json(_argon_key(), ARGON_STH1)
    head2 = verify_sth_json(_argon_key(), ARGON_STH2)
    proof = [base64.b64decode(h) for h in ARGON_CONSISTENCY]
    verify_consistency(head1.size, head2.size, head1.root, head2.root, proof)
    with pytest.raises(ProofError):
        verify_consistency(head1.size, head2.size, head1.root, head2.root, proof[:-1])
    tampered = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
    with pytest.raises(ProofError):
        verify_consistency(head1.size, head2.size, head1.root, head2.root, tampered)


def test_a_tampered_real_tree_head_fails_its_signature() -> None:
    with pytest.raises(SignatureError):
        verify_sth_json(_argon_key(), {**ARGON_STH1, "tree_size": ARGON_STH1["tree_size"] + 1})
    other_key = next(s.public_key for s in load_log_list() if "Xenon2027h1" in s.description)
    with pytest.raises(SignatureError):
        verify_sth_json(other_key, ARGON_STH1)


def test_rfc6962_reference_roots() -> None:
    # The RFC 6962 test vectors (certificate-transparency reference implementation).
    leaves = [
        bytes.fromhex(x)
        for x in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
    ]
    hashes = [leaf_hash(x) for x in leaves]
    assert root_of([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_of(hashes[:1]).hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert root_of(hashes).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def test_proofs_from_the_tree_verify_for_every_size() -> None:
    tree = MerkleTree()
    leaves = [leaf_hash(hashlib.sha256(bytes([i, i >> 8])).digest()) for i in range(130)]
    for h in leaves:
        tree.append(h)
    for size in range(1, 131):
        assert tree.root(size) == root_of(leaves[:size])
        for first in range(0, size + 1, 7):
            verify_consistency(first, size, tree.root(first), tree.root(size), tree.consistency_proof(first, size))
        for index in range(0, size, 11):
            rng = compact_range_from_inclusion(
                index, size, leaves[index], tree.inclusion_proof(index, size), tree.root(size)
            )
            assert rng.size == index + 1 and rng.root() == tree.root(index + 1)


def test_a_wrong_inclusion_proof_is_refused() -> None:
    tree = MerkleTree()
    leaves = [leaf_hash(bytes([i])) for i in range(20)]
    for h in leaves:
        tree.append(h)
    with pytest.raises(ProofError):
        compact_range_from_inclusion(5, 20, leaves[6], tree.inclusion_proof(5, 20), tree.root(20))


def test_compact_ranges_round_trip_and_accept_aligned_subtrees() -> None:
    tree = MerkleTree()
    leaves = [leaf_hash(i.to_bytes(2, "big")) for i in range(300)]
    for h in leaves:
        tree.append(h)
    rng = CompactRange()
    rng.extend(leaves[:37])
    assert CompactRange.from_json(rng.to_json()) == rng
    for start, height in subtree_decomposition(37, 300):
        rng.append_subtree(tree.subtree(start, start + (1 << height)), height)
    assert rng.size == 300 and rng.root() == tree.root()
    with pytest.raises(ProofError):
        CompactRange(5, [leaves[0]])
