"""Merkle tree hashing, audit paths and consistency proofs as in RFC 9162 (Certificate Transparency 2.0) §2.1.

Leaf hash = SHA-256(0x00 || leaf data), interior node = SHA-256(0x01 || left || right); the tree head over n
leaves (MTH) splits at the largest power of two smaller than n. Everything here streams over the leaf hashes
in order, once, holding O(log n) hashes: a log of millions of entries is never held as a list, and nothing
recurses over leaves (the recursions of the RFC run over integer ranges, log n deep).

Indexes are 0-based leaf positions (the audit log's entry `seq` is index + 1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from facetrail.errors import InvalidValueError

HASH_BYTES = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}): the hash of an empty string (RFC 9162 §2.1.1)."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class TreeBuilder:
    """The tree head over leaf hashes appended one at a time: a stack of perfect subtrees, like a binary
    counter; `root()` folds them from the right, which is exactly the RFC's split at the largest power of 2."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []  # (leaves in the perfect subtree, its hash)

    def append(self, leaf: bytes) -> None:
        width, digest = 1, leaf
        while self._stack and self._stack[-1][0] == width:
            _, left = self._stack.pop()
            width, digest = width * 2, node_hash(left, digest)
        self._stack.append((width, digest))
        self.size += 1

    @property
    def frontier(self) -> list[tuple[int, bytes]]:
        """The perfect subtrees the tree is made of (widths decreasing): enough to go on appending."""
        return list(self._stack)

    @classmethod
    def resume(cls, frontier: Sequence[tuple[int, bytes]]) -> TreeBuilder:
        """A builder that goes on from a frontier (checked: widths are decreasing powers of two)."""
        widths = [w for w, _ in frontier]
        if any(w <= 0 or w & (w - 1) for w in widths) or widths != sorted(set(widths), reverse=True) or \
                any(len(h) != HASH_BYTES for _, h in frontier):
            raise ValueError("not a Merkle tree frontier")
        builder = cls()
        builder._stack = list(frontier)
        builder.size = sum(widths)
        return builder

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        digest = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            digest = node_hash(left, digest)
        return digest


def tree_root(leaves: Iterable[bytes]) -> bytes:
    """MTH over the leaf hashes, in one pass."""
    builder = TreeBuilder()
    for leaf in leaves:
        builder.append(leaf)
    return builder.root()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges [start, end) whose subtree hashes make PATH(index, D[size]), leaf to root (§2.1.3.1)."""
    if not 0 <= index < size:
        raise InvalidValueError("index", f"leaf {index} is not in a tree of {size} entries")
    top_down: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            top_down.append((lo + k, hi))
            hi = lo + k
        else:
            top_down.append((lo, lo + k))
            lo = lo + k
    return top_down[::-1]


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The leaf ranges whose subtree hashes make PROOF(first, D[second]) (§2.1.4.1); empty when first is 0 or
    equal to second."""
    if not 0 <= first <= second:
        raise InvalidValueError("first", f"a tree of {first} entries cannot precede one of {second}")
    if first in (0, second):
        return []
    top_down: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, second, first, True  # SUBPROOF(m, D[lo:hi], whole)
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            top_down.append((lo + k, hi))
            hi = lo + k
        else:
            top_down.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        top_down.append((lo, hi))
    return top_down[::-1]


def subtree_hashes(leaves: Iterable[bytes], ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """The MTH of each of the (disjoint) ranges, in the order given, from one pass over the leaf hashes."""
    wanted = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    result: list[bytes | None] = [None] * len(ranges)
    position, builder, cursor = 0, TreeBuilder(), 0
    for leaf in leaves:
        if cursor == len(wanted):
            break
        start, end = ranges[wanted[cursor]]
        if position >= start:
            builder.append(leaf)
            if position + 1 == end:
                result[wanted[cursor]] = builder.root()
                builder, cursor = TreeBuilder(), cursor + 1
        position += 1
    missing = [ranges[i] for i, digest in enumerate(result) if digest is None]
    if missing:
        raise InvalidValueError("size", f"the log has only {position} entries; the proof needs {missing[0]}")
    return [digest for digest in result if digest is not None]


def inclusion_proof(leaves: Iterable[bytes], index: int, size: int) -> list[bytes]:
    return subtree_hashes(leaves, inclusion_ranges(index, size))


def consistency_proof(leaves: Iterable[bytes], first: int, second: int) -> list[bytes]:
    return subtree_hashes(leaves, consistency_ranges(first, second))


def root_from_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """The root that `path` leads `leaf` at `index` to in a tree of `size` (RFC 9162 §2.1.3.2, steps 1-5),
    or None when the path cannot belong to such a tree (wrong length, index out of range)."""
    if index >= size or index < 0:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """Does `path` prove that `leaf` is at `index` in the tree of `size` with `root`?"""
    return root_from_inclusion(leaf, index, size, path) == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       path: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: does `path` prove that the tree (first, first_root) is a prefix of (second,
    second_root)? Equal sizes need an empty proof and equal roots; every tree extends the empty one."""
    if first < 0 or first > second:
        return False
    if first == second:
        return not path and first_root == second_root
    if first == 0:
        return not path and first_root == EMPTY_ROOT
    if not path:
        return False
    proof = list(path)
    if first & (first - 1) == 0:  # an exact power of 2: the old root is itself a node of the new tree
        proof.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0
