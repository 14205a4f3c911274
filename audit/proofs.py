"""RFC 9162 §2.1 Merkle tree hashes, inclusion and consistency proofs, and their verification.

The log stores the hash of every complete subtree: node ``(level, index)`` covers the leaves
``[index << level, (index + 1) << level)`` and level 0 holds the leaf hashes. Every other hash a
root or a proof needs covers a range at some tree's right edge, and such a range is the right fold
of at most log2(n) + 1 stored complete subtrees. So each function here first plans the stored
nodes it needs, asks the caller's storage for all of them in one ``fetch``, then hashes: O(log n)
hashes and one query, whatever the log's size.

Pure (hashlib only, no storage) so that the service proving and an auditor checking run the
same code, and so that it can be checked exhaustively against the RFC's recursive definitions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence

_HASH_SIZE = 32
_sha256 = hashlib.sha256

EMPTY_ROOT: bytes = _sha256(b"").digest()

NodeId = tuple[int, int]  # (level, index)
Fetch = Callable[[Collection[NodeId]], Mapping[NodeId, bytes]]
_Plan = list[list[NodeId]]  # one group of stored nodes per hash; the hash is the group's right fold


class ProofError(ValueError):
    """A proof that does not prove its claim. A ValueError, so that code validating untrusted
    input catches it too; every verifier raises only this, whatever was wrong."""


def leaf_hash(leaf: bytes) -> bytes:
    """The hash of a leaf; the 0x00 prefix keeps a leaf from passing for an inner node."""
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an inner node; the 0x01 prefix keeps it from passing for a leaf."""
    return _sha256(b"\x01" + left + right).digest()


def root_nodes(size: int) -> list[NodeId]:
    """The complete subtrees a tree of ``size`` leaves is made of, largest (leftmost) first: one
    per set bit of ``size``, so a root needs at most log2(size) + 1 stored hashes."""
    _check_size(size)
    return _range_nodes(0, size)


def inclusion_nodes(index: int, size: int) -> list[NodeId]:
    """The stored nodes ``inclusion_proof`` fetches: what the storage must hold to prove ``index``."""
    _check_index(index, size)
    return _flatten(_path_plan(0, index, size))


def consistency_nodes(old_size: int, new_size: int) -> list[NodeId]:
    """The stored nodes ``consistency_proof`` fetches: what the storage must hold to prove that
    the tree of ``new_size`` leaves extends the tree of ``old_size``."""
    return _flatten(_consistency_plan(old_size, new_size))


def root(size: int, fetch: Fetch) -> bytes:
    """MTH of the first ``size`` leaves (RFC 9162 §2.1.1), from one fetch of its complete subtrees."""
    _check_size(size)
    if size == 0:
        return EMPTY_ROOT
    return _fetch_hashes([_range_nodes(0, size)], fetch)[0]


def inclusion_proof(index: int, size: int, fetch: Fetch) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1, leaf to root, from at most one fetch (none when
    the proof is empty, i.e. for the only leaf of a one-leaf tree)."""
    _check_index(index, size)
    return _fetch_hashes(_path_plan(0, index, size), fetch)


def consistency_proof(old_size: int, new_size: int, fetch: Fetch) -> list[bytes]:
    """PROOF(old_size, D[new_size]) of RFC 9162 §2.1.4.1, from at most one fetch (none when the
    sizes are equal: the proof is then empty). ``old_size`` 0 raises ValueError: the RFC defines
    no proof from the empty tree, and every tree trivially extends it."""
    return _fetch_hashes(_consistency_plan(old_size, new_size), fetch)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless ``proof`` shows the leaf hash ``leaf`` at ``index`` in the tree of
    ``size`` leaves whose root is ``root``.

    Equivalent to RFC 9162 §2.1.3.2's loop, written as transparency-dev/merkle does: index and
    size fix the proof's length and the side of every sibling, so a proof of any other length is
    refused before hashing, and no short proof can pass by running out early.
    """
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of {size} leaves")
    _check_hashes(proof, leaf=leaf, root=root)
    inner = _inner_size(index, size - 1)
    _check_length(proof, inner + (index >> inner).bit_count())
    if _chain(leaf, index, inner, proof) != root:
        raise ProofError(f"the proof does not lead from leaf {index} to the given root of a tree of "
                         f"{size} leaves")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """Raise ProofError unless ``proof`` shows that the tree of ``new_size`` leaves with root
    ``new_root`` extends the tree of ``old_size`` leaves with root ``old_root``.

    Equivalent to RFC 9162 §2.1.4.2's loop: the proof is the inclusion path of the old tree's
    last complete subtree, which the proof starts with unless the old size is a power of two (that
    subtree is then the old tree itself, whose root the verifier holds: the RFC's "prepend
    first_hash"). Folding only the left siblings gives the old root, folding all the new one.
    Equal sizes need an empty proof and equal roots; ``old_size`` 0 raises ProofError.
    """
    _check_consistency_sizes(old_size, new_size, ProofError)
    _check_hashes(proof, old_root=old_root, new_root=new_root)
    if old_size == new_size:
        _check_length(proof, 0)
        if old_root != new_root:
            raise ProofError(f"two trees of {old_size} leaves have different roots")
        return
    level, index = _last_subtree(old_size)
    inner = _inner_size(index, (new_size - 1) >> level)
    _check_length(proof, (index != 0) + inner + (index >> inner).bit_count())
    seed, path = (proof[0], proof[1:]) if index else (old_root, proof)
    if _chain_left(seed, index, inner, path) != old_root:
        raise ProofError(f"the proof does not lead to the given root of the old tree of {old_size} leaves")
    if _chain(seed, index, inner, path) != new_root:
        raise ProofError(f"the proof does not lead to the given root of the new tree of {new_size} leaves")


class Frontier:
    """The compact range of a growing tree: the right-edge complete subtrees (at most log2(n)+1
    hashes), all a writer or a verifier walking the log needs to keep to append and to know the
    root at every size."""

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        """Restore a tree of ``size`` leaves from the hashes of ``root_nodes(size)``, in that order."""
        _check_size(size)
        if len(hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves is made of {size.bit_count()} complete subtrees, "
                             f"not {len(hashes)}")
        for value in hashes:
            _check_hash_size(value, "a frontier hash", ValueError)
        self.size = size
        self._hashes = list(hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; every complete subtree it completes as (level, index, hash), the leaf
        itself first, so the writer stores exactly the nodes proofs will fetch.

        The new leaf merges with the frontier's smallest subtrees while they pair up: one per
        trailing one bit of the old size, each merge completing the next level up.
        """
        _check_hash_size(leaf_hash, "a leaf hash", ValueError)
        hashes, index, level, value = self._hashes, self.size, 0, leaf_hash
        completed = [(0, index, value)]
        while index & 1:
            value = node_hash(hashes.pop(), value)
            index >>= 1
            level += 1
            completed.append((level, index, value))
        hashes.append(value)
        self.size += 1
        return completed

    def root(self) -> bytes:
        """The root of the tree so far (EMPTY_ROOT before the first leaf)."""
        return _fold(self._hashes) if self._hashes else EMPTY_ROOT

    def hashes(self) -> list[bytes]:
        """The current complete subtrees, in ``root_nodes(self.size)`` order: what to persist to
        restore this frontier later."""
        return list(self._hashes)


def _range_nodes(start: int, end: int) -> list[NodeId]:
    """The complete subtrees covering ``[start, end)``, left to right. ``start`` must be aligned
    to the largest of them, as at every tree's right edge."""
    nodes, width = [], end - start
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            nodes.append((level, start >> level))
            start += 1 << level
    return nodes


def _path_plan(level: int, index: int, size: int) -> _Plan:
    """The audit path of the complete node ``(level, index)`` in a tree of ``size`` leaves, from
    the node up (the order of RFC 9162's PATH and SUBPROOF).

    For ``inner`` levels the path climbs beside the tree's last leaf's path; the siblings there
    are complete except the topmost, which may reach past the right edge and is then the fold of
    its complete pieces. Above, the path runs along the right edge, where only the left
    siblings exist, and they are complete.
    """
    inner = _inner_size(index, (size - 1) >> level)
    plan = [[(level + step, (index >> step) ^ 1)] for step in range(inner - 1)]
    if inner:
        top = level + inner - 1
        start = ((index >> (inner - 1)) ^ 1) << top
        plan.append(_range_nodes(start, min(start + (1 << top), size)))
    level, index = level + inner, index >> inner
    while index:
        if index & 1:
            plan.append([(level, index ^ 1)])
        level, index = level + 1, index >> 1
    return plan


def _consistency_plan(old_size: int, new_size: int) -> _Plan:
    """PROOF(old_size, D[new_size]): the old tree's last complete subtree (omitted when it is the
    whole old tree) and that subtree's audit path in the new tree."""
    _check_consistency_sizes(old_size, new_size, ValueError)
    if old_size == new_size:
        return []
    level, index = _last_subtree(old_size)
    plan = _path_plan(level, index, new_size)
    return plan if index == 0 else [[(level, index)], *plan]


def _last_subtree(size: int) -> NodeId:
    """The largest complete subtree ending at ``size``: the one for its lowest set bit."""
    level = (size & -size).bit_length() - 1
    return level, (size - 1) >> level


def _inner_size(index: int, last: int) -> int:
    """How many levels the path of ``index`` climbs before it joins the path of ``last``, the
    tree's last node at that level: below, both its siblings' sides vary; above, it is the edge."""
    return (index ^ last).bit_length()


def _flatten(plan: _Plan) -> list[NodeId]:
    return [node for group in plan for node in group]


def _fetch_hashes(plan: _Plan, fetch: Fetch) -> list[bytes]:
    """The plan's hashes from one fetch of all its nodes (no fetch for an empty plan)."""
    nodes = _flatten(plan)
    if not nodes:
        return []
    found = fetch(nodes)
    return [_fold([_stored(found, node) for node in group]) for group in plan]


def _stored(found: Mapping[NodeId, bytes], node: NodeId) -> bytes:
    """A fetched hash; a missing one means the storage lost a node, never a bad request."""
    try:
        return found[node]
    except KeyError:
        level, index = node
        raise KeyError(f"the stored hash of subtree (level {level}, index {index}) is missing") from None


def _fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of adjacent complete subtrees, largest first: RFC 9162 splits off the largest power
    of two on the left, so the tree over them leans right."""
    value = hashes[-1]
    for left in hashes[-2::-1]:
        value = node_hash(left, value)
    return value


def _chain(seed: bytes, index: int, inner: int, path: Sequence[bytes]) -> bytes:
    """The root an audit path leads to from ``seed`` at ``index``: siblings sit on the side
    ``index``'s bits say for ``inner`` levels, then all on the left (the right edge)."""
    value = seed
    for step, sibling in enumerate(path):
        on_left = step >= inner or index >> step & 1
        value = node_hash(sibling, value) if on_left else node_hash(value, sibling)
    return value


def _chain_left(seed: bytes, index: int, inner: int, path: Sequence[bytes]) -> bytes:
    """The root of the tree ending at ``seed``'s right edge: only the left siblings are in it."""
    value = seed
    for step, sibling in enumerate(path):
        if step >= inner or index >> step & 1:
            value = node_hash(sibling, value)
    return value


def _check_size(size: int) -> None:
    if size < 0:
        raise ValueError(f"a tree size cannot be negative: {size}")


def _check_index(index: int, size: int) -> None:
    _check_size(size)
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of {size} leaves")


def _check_consistency_sizes(old_size: int, new_size: int, error: type[ValueError]) -> None:
    if old_size < 1:
        raise error(f"consistency from a tree of {old_size} leaves is not provable: the old size must "
                    "be at least 1")
    if old_size > new_size:
        raise error(f"the old tree ({old_size} leaves) is larger than the new one ({new_size})")


def _check_hashes(proof: Sequence[bytes], **named: bytes) -> None:
    for name, value in named.items():
        _check_hash_size(value, name, ProofError)
    for position, value in enumerate(proof):
        _check_hash_size(value, f"proof[{position}]", ProofError)


def _check_hash_size(value: bytes, name: str, error: type[ValueError]) -> None:
    if len(value) != _HASH_SIZE:
        raise error(f"{name} is {len(value)} bytes, not a {_HASH_SIZE}-byte SHA-256 hash")


def _check_length(proof: Sequence[bytes], expected: int) -> None:
    if len(proof) != expected:
        raise ProofError(f"the proof has {len(proof)} hashes where {expected} are needed")
