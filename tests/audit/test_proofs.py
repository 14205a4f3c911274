"""audit.proofs against the RFC 9162 §2.1 definitions written out recursively, the published
RFC 6962 vectors of transparency-dev/merkle, and that project's probes of corrupted proofs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import proofs
from audit.proofs import Frontier, NodeId, ProofError

# --- RFC 9162 §2.1, word for word, over a list of leaves -------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def ref_mth(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return sha256(b"\x00" + leaves[0])
    k = split(len(leaves))
    return sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:]))


def ref_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = split(len(leaves))
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    return ref_subproof(m, leaves, True)


def ref_subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [ref_mth(leaves)]
    k = split(n)
    if m <= k:
        return [*ref_subproof(m, leaves[:k], whole), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


def ref_verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = sha256(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def ref_verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes,
                           proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, step by step (equal sizes: empty proof and equal roots; size 0: never)."""
    if not 0 < first <= second:
        return False
    if first == second:
        return not proof and first_hash == second_hash
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sha256(b"\x01" + c + fr)
            sr = sha256(b"\x01" + c + sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = sha256(b"\x01" + sr + c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_hash and sr == second_hash and sn == 0


# --- an in-memory log: every complete subtree hash, as the database stores them ---------------


def complete_subtrees(leaves: Sequence[bytes]) -> dict[NodeId, bytes]:
    nodes = {(0, index): sha256(b"\x00" + leaf) for index, leaf in enumerate(leaves)}
    level = 1
    while (1 << level) <= len(leaves):
        for index in range(len(leaves) >> level):
            left, right = nodes[level - 1, 2 * index], nodes[level - 1, 2 * index + 1]
            nodes[level, index] = sha256(b"\x01" + left + right)
        level += 1
    return nodes


class Storage:
    """A fetch over a tree of ``size`` leaves that records each call and refuses to be asked for
    anything the real storage could not hold (an incomplete or future subtree)."""

    def __init__(self, nodes: Mapping[NodeId, bytes], size: int) -> None:
        self.nodes, self.size, self.calls = nodes, size, []

    def __call__(self, wanted: Collection[NodeId]) -> dict[NodeId, bytes]:
        wanted = list(wanted)
        self.calls.append(wanted)
        assert len(set(wanted)) == len(wanted), f"duplicate nodes requested: {wanted}"
        for level, index in wanted:
            assert level >= 0 and index >= 0 and (index + 1) << level <= self.size, (level, index)
        return {node: self.nodes[node] for node in wanted}


def make_leaves(count: int) -> list[bytes]:
    return [f"event {number}".encode() * (number % 3) for number in range(count)]


LEAVES = make_leaves(300)
STORE = complete_subtrees(LEAVES)
EXHAUSTIVE = 70  # every size, index and old size up to this is checked against the RFC
PROBED = 33  # every proof up to this size is probed, one bit per byte flipped
EVERY_BIT = 9  # and up to this size, every bit


# --- published vectors: transparency-dev/merkle testonly/constants.go, proof/verify_test.go ---

RFC_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f")]
RFC_NODES = [
    ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
     "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
     "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
     "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
     "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
     "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
     "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
     "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"],
    ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
     "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
     "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
     "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"],
    ["d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
     "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]
RFC_ROOTS = [bytes.fromhex(h) for h in (  # by tree size, 0..8
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
# verify_test.go numbers leaves from 1 ({1, 8, ...} is index 0); these are 0-based.
RFC_INCLUSION = [
    (0, 1, []),
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
RFC_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
RFC_STORE = {(level, index): bytes.fromhex(value)
             for level, row in enumerate(RFC_NODES) for index, value in enumerate(row)}


def test_published_hashes() -> None:
    assert sha256(b"") == proofs.EMPTY_ROOT == RFC_ROOTS[0]
    assert complete_subtrees(RFC_LEAVES) == RFC_STORE
    assert [proofs.leaf_hash(leaf) for leaf in RFC_LEAVES] == [RFC_STORE[0, i] for i in range(8)]
    assert proofs.node_hash(RFC_STORE[0, 0], RFC_STORE[0, 1]) == RFC_STORE[1, 0]
    for size, expected in enumerate(RFC_ROOTS):
        assert proofs.root(size, Storage(RFC_STORE, size)) == expected
        assert ref_mth(RFC_LEAVES[:size]) == expected


@pytest.mark.parametrize(("index", "size", "proof"), RFC_INCLUSION)
def test_published_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    expected = [bytes.fromhex(h) for h in proof]
    assert proofs.inclusion_proof(index, size, Storage(RFC_STORE, size)) == expected
    proofs.verify_inclusion(RFC_STORE[0, index], index, size, expected, RFC_ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), RFC_CONSISTENCY)
def test_published_consistency_proofs(old: int, new: int, proof: list[str]) -> None:
    expected = [bytes.fromhex(h) for h in proof]
    assert proofs.consistency_proof(old, new, Storage(RFC_STORE, new)) == expected
    proofs.verify_consistency(old, new, RFC_ROOTS[old], RFC_ROOTS[new], expected)


def test_a_node_never_passes_for_a_leaf() -> None:
    a, b = RFC_STORE[0, 0], RFC_STORE[0, 1]
    assert proofs.node_hash(a, b) != proofs.leaf_hash(a + b)
    assert proofs.leaf_hash(a + b) == sha256(b"\x00" + a + b)
    assert proofs.node_hash(a, b) == sha256(b"\x01" + a + b)


# --- exhaustive cross-check with the RFC definitions ------------------------------------------


@pytest.mark.parametrize("size", range(1, EXHAUSTIVE + 1))
def test_every_root_and_proof_matches_the_rfc(size: int) -> None:
    leaves = LEAVES[:size]
    storage = Storage(STORE, size)
    root = proofs.root(size, storage)
    assert root == ref_mth(leaves)
    assert storage.calls == [proofs.root_nodes(size)]
    for index in range(size):
        storage.calls.clear()
        proof = proofs.inclusion_proof(index, size, storage)
        assert proof == ref_path(index, leaves)
        assert storage.calls == ([proofs.inclusion_nodes(index, size)] if proof else [])
        assert len(proofs.inclusion_nodes(index, size)) <= 2 * size.bit_length()
        proofs.verify_inclusion(STORE[0, index], index, size, proof, root)
    for old in range(1, size + 1):
        storage.calls.clear()
        proof = proofs.consistency_proof(old, size, storage)
        assert proof == ref_proof(old, leaves)
        assert storage.calls == ([proofs.consistency_nodes(old, size)] if proof else [])
        assert len(proofs.consistency_nodes(old, size)) <= 2 * size.bit_length() + 1
        proofs.verify_consistency(old, size, ref_mth(leaves[:old]), root, proof)


def test_root_of_the_empty_tree_fetches_nothing() -> None:
    storage = Storage(STORE, 0)
    assert proofs.root(0, storage) == sha256(b"")
    assert proofs.root_nodes(0) == []
    assert storage.calls == []


def test_root_nodes_are_the_right_edge_subtrees() -> None:
    assert proofs.root_nodes(1) == [(0, 0)]
    assert proofs.root_nodes(7) == [(2, 0), (1, 2), (0, 6)]
    assert proofs.root_nodes(8) == [(3, 0)]
    assert proofs.root_nodes(13) == [(3, 0), (2, 2), (0, 12)]


def test_a_missing_stored_node_is_a_key_error_naming_it() -> None:
    def lossy(wanted: Collection[NodeId]) -> dict[NodeId, bytes]:
        return {node: STORE[node] for node in wanted if node != (1, 2)}

    with pytest.raises(KeyError, match=r"level 1, index 2"):
        proofs.inclusion_proof(0, 7, lossy)
    with pytest.raises(KeyError, match=r"level 1, index 2"):
        proofs.root(7, lossy)
    with pytest.raises(KeyError, match=r"level 1, index 2"):
        proofs.consistency_proof(3, 7, lossy)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: proofs.root_nodes(-1), "negative"),
    (lambda: proofs.root(-1, STORE.get), "negative"),
    (lambda: proofs.inclusion_nodes(0, 0), "index 0 is not in a tree of 0"),
    (lambda: proofs.inclusion_nodes(5, 5), "index 5 is not in a tree of 5"),
    (lambda: proofs.inclusion_nodes(-1, 5), "index -1"),
    (lambda: proofs.inclusion_nodes(0, -1), "negative"),
    (lambda: proofs.inclusion_proof(3, 3, STORE.get), "index 3"),
    (lambda: proofs.consistency_nodes(0, 5), "not provable"),
    (lambda: proofs.consistency_nodes(-2, 5), "not provable"),
    (lambda: proofs.consistency_nodes(6, 5), "larger"),
    (lambda: proofs.consistency_proof(0, 0, STORE.get), "not provable"),
    (lambda: proofs.consistency_proof(4, 3, STORE.get), "larger"),
    (lambda: Frontier(-1), "negative"),
    (lambda: Frontier(3, [SOME_HASH]), "2 complete subtrees, not 1"),
    (lambda: Frontier(2, [b"short"]), "5 bytes"),
    (lambda: Frontier().append(b"short"), "5 bytes"),
])
def test_bad_arguments_are_value_errors(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_equal_sizes_need_no_fetch_and_an_empty_proof() -> None:
    storage = Storage(STORE, 9)
    assert proofs.consistency_proof(9, 9, storage) == []
    assert proofs.consistency_nodes(9, 9) == []
    assert storage.calls == []
    root = ref_mth(LEAVES[:9])
    proofs.verify_consistency(9, 9, root, root, [])
    with pytest.raises(ProofError, match="different roots"):
        proofs.verify_consistency(9, 9, root, SOME_HASH, [])
    with pytest.raises(ProofError, match="1 hashes where 0"):
        proofs.verify_consistency(9, 9, root, root, [root])


def test_consistency_from_the_empty_tree_is_refused() -> None:
    with pytest.raises(ProofError, match="not provable"):
        proofs.verify_consistency(0, 0, proofs.EMPTY_ROOT, proofs.EMPTY_ROOT, [])
    with pytest.raises(ProofError, match="not provable"):
        proofs.verify_consistency(0, 1, proofs.EMPTY_ROOT, RFC_ROOTS[1], [])


def test_single_leaf_tree() -> None:
    """transparency-dev's TestVerifyInclusionSingleEntry: root and leaf hash coincide."""
    leaf = proofs.leaf_hash(b"data")
    proofs.verify_inclusion(leaf, 0, 1, [], leaf)
    for wrong_leaf, wrong_root in [(leaf, b""), (b"", leaf), (b"", b""), (SOME_HASH, leaf)]:
        with pytest.raises(ProofError):
            proofs.verify_inclusion(wrong_leaf, 0, 1, [], wrong_root)
    for index, size in [(0, 0), (1, 0), (2, 1), (-1, 1)]:
        with pytest.raises(ProofError, match="not in a tree"):
            proofs.verify_inclusion(leaf, index, size, [], leaf)


# --- probes: transparency-dev/merkle's corrupted proofs, and more ---------------------------


def flipped(proof: Sequence[bytes], position: int, bit: int) -> list[bytes]:
    wrong = list(proof)
    value = bytearray(wrong[position])
    value[bit // 8] ^= 1 << (bit % 8)
    wrong[position] = bytes(value)
    return wrong


def flips(proof: Sequence[bytes], every_bit: bool) -> Iterator[tuple[str, list[bytes]]]:
    """Single-bit flips: every bit, or one bit per byte (a different one in each byte)."""
    for position in range(len(proof)):
        bits = range(256) if every_bit else (8 * byte + (byte + position) % 8 for byte in range(32))
        for bit in bits:
            yield f"proof[{position}] bit {bit}", flipped(proof, position, bit)


def inclusion_probes(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes,
                     every_bit: bool) -> Iterator[tuple[str, tuple[Any, ...]]]:
    yield "index - 1", (leaf, index - 1, size, proof, root)
    yield "index + 1", (leaf, index + 1, size, proof, root)
    yield "index ^ 2", (leaf, index ^ 2, size, proof, root)
    yield "size - 1", (leaf, index, size - 1, proof, root)
    yield "size + 1", (leaf, index, size + 1, proof, root)
    yield "size * 2", (leaf, index, size * 2, proof, root)
    yield "size / 2", (leaf, index, size // 2, proof, root)
    yield "wrong leaf", (proofs.leaf_hash(b"WrongLeaf"), index, size, proof, root)
    yield "short leaf", (b"WrongLeaf", index, size, proof, root)
    yield "flipped leaf", (flipped([leaf], 0, 100)[0], index, size, proof, root)
    yield "empty root", (leaf, index, size, proof, proofs.EMPTY_ROOT)
    yield "random root", (leaf, index, size, proof, SOME_HASH)
    yield "flipped root", (leaf, index, size, proof, flipped([root], 0, 7)[0])
    yield "trailing garbage", (leaf, index, size, [*proof, b""], root)
    yield "trailing root", (leaf, index, size, [*proof, root], root)
    yield "trailing hash", (leaf, index, size, [*proof, SOME_HASH], root)
    yield "preceding garbage", (leaf, index, size, [b"", *proof], root)
    yield "preceding root", (leaf, index, size, [root, *proof], root)
    yield "preceding leaf", (leaf, index, size, [leaf, *proof], root)
    if proof:
        yield "leaf as root", (leaf, index, size, proof, leaf)
        yield "empty proof", (leaf, index, size, [], root)
        yield "removed last", (leaf, index, size, proof[:-1], root)
        yield "removed first", (leaf, index, size, proof[1:], root)
        yield "inserted component", (leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root)
        yield "reversed", (leaf, index, size, proof[::-1], root) if len(proof) > 1 else (
            leaf, index, size, [SOME_HASH], root)
    for desc, wrong in flips(proof, every_bit):
        yield desc, (leaf, index, size, wrong, root)


def consistency_probes(old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes],
                       every_bit: bool) -> Iterator[tuple[str, tuple[Any, ...]]]:
    yield "old - 1", (old - 1, new, old_root, new_root, proof)
    yield "old + 1", (old + 1, new, old_root, new_root, proof)
    yield "old ^ 2", (old ^ 2, new, old_root, new_root, proof)
    yield "new - 1", (old, new - 1, old_root, new_root, proof)
    yield "new + 1", (old, new + 1, old_root, new_root, proof)
    yield "new * 2", (old, new * 2, old_root, new_root, proof)
    yield "new / 2", (old, new // 2, old_root, new_root, proof)
    yield "short old root", (old, new, b"WrongRoot", new_root, proof)
    yield "short new root", (old, new, old_root, b"WrongRoot", proof)
    yield "flipped old root", (old, new, flipped([old_root], 0, 9)[0], new_root, proof)
    yield "flipped new root", (old, new, old_root, flipped([new_root], 0, 9)[0], proof)
    yield "swapped roots", (old, new, new_root, old_root, proof)
    yield "new root twice", (old, new, new_root, new_root, proof)
    yield "empty proof", (old, new, old_root, new_root, [])
    yield "trailing garbage", (old, new, old_root, new_root, [*proof, b""])
    yield "trailing old root", (old, new, old_root, new_root, [*proof, old_root])
    yield "trailing new root", (old, new, old_root, new_root, [*proof, new_root])
    yield "preceding garbage", (old, new, old_root, new_root, [b"", *proof])
    yield "preceding old root", (old, new, old_root, new_root, [old_root, *proof])
    yield "preceding new root", (old, new, old_root, new_root, [new_root, *proof])
    yield "preceding proof[0]", (old, new, old_root, new_root, [proof[0], *proof])
    yield "removed last", (old, new, old_root, new_root, proof[:-1])
    yield "removed first", (old, new, old_root, new_root, proof[1:])
    yield "inserted component", (old, new, old_root, new_root, [proof[0], SOME_HASH, *proof[1:]])
    for desc, wrong in flips(proof, every_bit):
        yield desc, (old, new, old_root, new_root, wrong)


# The RFC's verifiers cannot tell some neighbouring sizes apart: when the audit path climbs the
# same way in both trees (e.g. leaf 0 of 3 and of 4 leaves: one sibling on the right, then one
# more), a proof for one verifies for the other against the same root, since a proof hash cannot
# show how many leaves it covers. Such a probe must fail exactly when RFC 9162's own algorithm
# fails; every other probe must fail always.
SAME_SHAPE_POSSIBLE = {"size - 1", "size + 1", "new - 1", "new + 1"}


def verdict(verify: Callable[..., None], args: tuple[Any, ...]) -> bool:
    try:
        verify(*args)
    except ProofError:
        return False
    return True


def check_probes(probes: Iterator[tuple[str, tuple[Any, ...]]], verify: Callable[..., None],
                 reference: Callable[..., bool]) -> None:
    """Every probe fails, and exactly when the RFC's algorithm fails too."""
    for desc, args in probes:
        accepted = verdict(verify, args)
        assert accepted == reference(*args), desc
        assert not accepted or desc in SAME_SHAPE_POSSIBLE, f"corrupted proof accepted: {desc} {args[:3]}"


def test_published_proofs_survive_no_probe() -> None:
    """Every bit of every published proof (and e.g. leaf 5 of 8 'verifies' at size 7: same shape)."""
    for index, size, proof in RFC_INCLUSION:
        good = [bytes.fromhex(h) for h in proof]
        probes = inclusion_probes(RFC_STORE[0, index], index, size, good, RFC_ROOTS[size], True)
        check_probes(probes, proofs.verify_inclusion, ref_verify_inclusion)
    for old, new, proof in RFC_CONSISTENCY[1:]:
        good = [bytes.fromhex(h) for h in proof]
        probes = consistency_probes(old, new, RFC_ROOTS[old], RFC_ROOTS[new], good, True)
        check_probes(probes, proofs.verify_consistency, ref_verify_consistency)


@pytest.mark.parametrize("size", range(1, PROBED + 1))
def test_every_corrupted_inclusion_proof_fails(size: int) -> None:
    root = ref_mth(LEAVES[:size])
    for index in range(size):
        proof = ref_path(index, LEAVES[:size])
        probes = inclusion_probes(STORE[0, index], index, size, proof, root, size <= EVERY_BIT)
        check_probes(probes, proofs.verify_inclusion, ref_verify_inclusion)


@pytest.mark.parametrize("new", range(2, PROBED + 1))
def test_every_corrupted_consistency_proof_fails(new: int) -> None:
    new_root = ref_mth(LEAVES[:new])
    for old in range(1, new):
        proof = ref_proof(old, LEAVES[:new])
        probes = consistency_probes(old, new, ref_mth(LEAVES[:old]), new_root, proof, new <= EVERY_BIT)
        check_probes(probes, proofs.verify_consistency, ref_verify_consistency)


def test_the_same_shape_blind_spot_is_the_rfcs_own() -> None:
    """Leaf 0 of 3 leaves and of 4: the proof [h1, h2] also 'verifies' at size 4, for the RFC's
    algorithm and so for ours; sizes whose paths differ (size * 2, size / 2) never do."""
    proof = ref_path(0, LEAVES[:3])
    root = ref_mth(LEAVES[:3])
    assert ref_verify_inclusion(STORE[0, 0], 0, 4, proof, root)
    proofs.verify_inclusion(STORE[0, 0], 0, 4, proof, root)


# --- Frontier -----------------------------------------------------------------------------------


def test_frontier_grows_like_the_reference_and_reports_every_complete_subtree() -> None:
    frontier = Frontier()
    assert (frontier.size, frontier.root(), frontier.hashes()) == (0, proofs.EMPTY_ROOT, [])
    reported: list[tuple[int, int, bytes]] = []
    for size in range(1, len(LEAVES) + 1):
        completed = frontier.append(STORE[0, size - 1])
        assert completed[0] == (0, size - 1, STORE[0, size - 1])
        assert [level for level, _, _ in completed] == list(range(len(completed)))
        reported += completed
        assert frontier.size == size
        assert frontier.root() == ref_mth(LEAVES[:size])
        assert frontier.hashes() == [STORE[node] for node in proofs.root_nodes(size)]
    assert len(reported) == len(STORE)
    assert {(level, index): value for level, index, value in reported} == STORE


def test_frontier_matches_the_published_compact_trees() -> None:
    frontier = Frontier()
    for size in range(1, 9):
        frontier.append(proofs.leaf_hash(RFC_LEAVES[size - 1]))
        assert frontier.root() == RFC_ROOTS[size]
    # testonly.CompactTrees()[7] is {nh[2][0], nh[1][2], nh[0][6]}.
    seven = Frontier(7, [RFC_STORE[2, 0], RFC_STORE[1, 2], RFC_STORE[0, 6]])
    assert seven.root() == RFC_ROOTS[7]
    assert seven.append(RFC_STORE[0, 7]) == [
        (0, 7, RFC_STORE[0, 7]), (1, 3, RFC_STORE[1, 3]), (2, 1, RFC_STORE[2, 1]), (3, 0, RFC_STORE[3, 0])]
    assert seven.hashes() == [RFC_STORE[3, 0]]


def test_a_restored_frontier_continues_exactly() -> None:
    end = 100
    whole = Frontier()
    reported = [whole.append(STORE[0, index]) for index in range(end)]
    for start in range(end + 1):
        restored = Frontier(start, [STORE[node] for node in proofs.root_nodes(start)])
        assert restored.size == start
        assert [restored.append(STORE[0, index]) for index in range(start, end)] == reported[start:]
        assert restored.root() == whole.root()
        assert restored.hashes() == whole.hashes()


def test_frontier_hashes_are_a_copy() -> None:
    frontier = Frontier(1, [STORE[0, 0]])
    frontier.hashes().clear()
    assert frontier.root() == STORE[0, 0]


# --- properties at sizes no in-memory tree could hold ----------------------------------------

UNIFORM = [sha256(b"\x00same")]  # a log whose leaves are all equal: level l's hash is UNIFORM[l]
for _ in range(64):
    UNIFORM.append(sha256(b"\x01" + UNIFORM[-1] + UNIFORM[-1]))


def uniform_fetch(size: int) -> Callable[[Collection[NodeId]], dict[NodeId, bytes]]:
    def fetch(wanted: Collection[NodeId]) -> dict[NodeId, bytes]:
        assert all((index + 1) << level <= size for level, index in wanted)
        return {(level, index): UNIFORM[level] for level, index in wanted}
    return fetch


huge = st.integers(min_value=1, max_value=2**62)


@settings(max_examples=300, deadline=None)
@given(size=huge, data=st.data())
def test_huge_trees_prove_in_log_size_nodes(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    nodes = proofs.inclusion_nodes(index, size)
    assert len(set(nodes)) == len(nodes) <= 2 * size.bit_length()
    root = proofs.root(size, uniform_fetch(size))
    proof = proofs.inclusion_proof(index, size, uniform_fetch(size))
    proofs.verify_inclusion(UNIFORM[0], index, size, proof, root)
    old = data.draw(st.integers(min_value=1, max_value=size))
    nodes = proofs.consistency_nodes(old, size)
    assert len(set(nodes)) == len(nodes) <= 2 * size.bit_length() + 1
    proof = proofs.consistency_proof(old, size, uniform_fetch(size))
    proofs.verify_consistency(old, size, proofs.root(old, uniform_fetch(old)), root, proof)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_corrupted_byte_is_caught(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=2, max_value=len(LEAVES)))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = proofs.inclusion_proof(index, size, Storage(STORE, size))
    root = proofs.root(size, Storage(STORE, size))
    position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
    byte = data.draw(st.integers(min_value=0, max_value=31))
    mask = data.draw(st.integers(min_value=1, max_value=255))
    wrong, value = list(proof), bytearray(proof[position])
    value[byte] ^= mask
    wrong[position] = bytes(value)
    proofs.verify_inclusion(STORE[0, index], index, size, proof, root)
    with pytest.raises(ProofError, match="does not lead"):
        proofs.verify_inclusion(STORE[0, index], index, size, wrong, root)
