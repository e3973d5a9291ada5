"""The streaming Merkle tree against the RFC 9162 definitions written out naively (recursion over lists)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facetrail.audit import merkle
from facetrail.errors import InvalidValueError


def naive_mth(leaves: list[bytes]) -> bytes:
    """MTH exactly as §2.1.1 writes it: recursion over the list of leaf data."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:])).digest()


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of §2.1.3.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return naive_path(m, leaves[:k]) + [naive_mth(leaves[k:])]
    return naive_path(m - k, leaves[k:]) + [naive_mth(leaves[:k])]


def naive_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of §2.1.4.1."""
    n = len(leaves)
    if m == n:
        return [] if whole else [naive_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return naive_subproof(m, leaves[:k], whole) + [naive_mth(leaves[k:])]
    return naive_subproof(m - k, leaves[k:], False) + [naive_mth(leaves[:k])]


def data(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def hashes(n: int) -> list[bytes]:
    return [merkle.leaf_hash(d) for d in data(n)]


def test_every_small_size_has_the_rfc_root_paths_and_proofs() -> None:
    for n in [*range(0, 67), 127, 128, 129]:  # every size to 66, and around 2^7
        leaves = data(n)
        root = merkle.tree_root(hashes(n))
        assert root == naive_mth(leaves), n
        for m in range(n):
            path = merkle.inclusion_proof(iter(hashes(n)), m, n)
            assert path == naive_path(m, leaves), (m, n)
            assert merkle.verify_inclusion(merkle.leaf_hash(leaves[m]), m, n, path, root)
        for m in range(1, n):
            proof = merkle.consistency_proof(iter(hashes(n)), m, n)
            assert proof == naive_subproof(m, leaves, True), (m, n)
            assert merkle.verify_consistency(m, n, naive_mth(leaves[:m]), root, proof), (m, n)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3000), st.data())
def test_random_sizes_prove_and_verify(n: int, draw: st.DataObject) -> None:
    leaves = data(n)
    root = merkle.tree_root(merkle.leaf_hash(d) for d in leaves)
    m = draw.draw(st.integers(0, n - 1))
    path = merkle.inclusion_proof((merkle.leaf_hash(d) for d in leaves), m, n)
    assert merkle.verify_inclusion(merkle.leaf_hash(leaves[m]), m, n, path, root)
    assert not merkle.verify_inclusion(merkle.leaf_hash(b"forged"), m, n, path, root)
    if n > 1:
        other = (m + draw.draw(st.integers(1, n - 1))) % n
        assert not merkle.verify_inclusion(merkle.leaf_hash(leaves[m]), other, n, path, root) or \
            leaves[other] == leaves[m]
    first = draw.draw(st.integers(1, n))
    proof = merkle.consistency_proof((merkle.leaf_hash(d) for d in leaves), first, n)
    first_root = merkle.tree_root(merkle.leaf_hash(d) for d in leaves[:first])
    assert merkle.verify_consistency(first, n, first_root, root, proof)
    if first < n:
        assert proof == naive_subproof(first, leaves, True)
        changed = leaves[:first - 1] + [b"edited"] + leaves[first:]
        assert not merkle.verify_consistency(first, n, first_root, naive_mth(changed), proof)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 200), st.data())
def test_any_altered_proof_hash_fails(n: int, draw: st.DataObject) -> None:
    leaves = hashes(n)
    root = merkle.tree_root(leaves)
    m = draw.draw(st.integers(0, n - 1))
    path = merkle.inclusion_proof(iter(leaves), m, n)
    i = draw.draw(st.integers(0, len(path) - 1))
    bad = list(path)
    bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
    assert not merkle.verify_inclusion(leaves[m], m, n, bad, root)
    assert not merkle.verify_inclusion(leaves[m], m, n, path[:-1], root)
    assert not merkle.verify_inclusion(leaves[m], m, n, [*path, path[0]], root)
    first = draw.draw(st.integers(1, n - 1))
    proof = merkle.consistency_proof(iter(leaves), first, n)
    first_root = merkle.tree_root(leaves[:first])
    j = draw.draw(st.integers(0, len(proof) - 1))
    bad = list(proof)
    bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
    assert not merkle.verify_consistency(first, n, first_root, root, bad)
    assert not merkle.verify_consistency(first, n, first_root, root, [])


def test_edge_cases_of_the_verifiers() -> None:
    leaves = hashes(5)
    root = merkle.tree_root(leaves)
    assert merkle.tree_root([]) == merkle.EMPTY_ROOT
    assert merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, root, [])
    assert merkle.verify_consistency(5, 5, root, root, [])
    assert not merkle.verify_consistency(5, 5, root, merkle.EMPTY_ROOT, [])
    assert not merkle.verify_consistency(6, 5, root, root, [])
    assert not merkle.verify_inclusion(leaves[0], 5, 5, [], root)
    assert merkle.verify_inclusion(leaves[0], 0, 1, [], leaves[0])
    with pytest.raises(InvalidValueError, match="not in a tree"):
        merkle.inclusion_ranges(5, 5)
    with pytest.raises(InvalidValueError, match="only 5 entries"):
        merkle.inclusion_proof(iter(leaves), 2, 9)


def test_a_million_leaves_stream_from_a_generator() -> None:
    """10^6 leaves: the root and an audit path, each in one pass over a generator (never a list)."""
    n = 1_000_000

    def stream() -> Iterator[bytes]:
        return (hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n))

    root = merkle.tree_root(stream())
    path = merkle.inclusion_proof(stream(), 765_432, n)
    assert len(path) == 20
    leaf = hashlib.sha256((765_432).to_bytes(4, "big")).digest()
    assert merkle.verify_inclusion(leaf, 765_432, n, path, root)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 600), st.integers(0, 600))
def test_a_tree_goes_on_from_its_frontier(m: int, extra: int) -> None:
    leaves = hashes(m + extra)
    first = merkle.TreeBuilder()
    for leaf in leaves[:m]:
        first.append(leaf)
    resumed = merkle.TreeBuilder.resume(first.frontier)
    assert resumed.size == m and resumed.root() == merkle.tree_root(leaves[:m])
    for leaf in leaves[m:]:
        resumed.append(leaf)
    assert resumed.root() == naive_mth(data(m + extra))


def test_a_malformed_frontier_is_refused() -> None:
    digest = merkle.leaf_hash(b"x")
    for frontier in ([(3, digest)], [(1, digest), (2, digest)], [(2, digest), (2, digest)], [(1, b"short")]):
        with pytest.raises(ValueError, match="frontier"):
            merkle.TreeBuilder.resume(frontier)
