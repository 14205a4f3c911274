"""C2SP signed notes (https://c2sp.org/signed-note) and tlog checkpoints (https://c2sp.org/tlog-checkpoint).

A signed note is a text, a blank line, then one signature line per key::

    <text: non-empty, ends in a newline>
    <blank line>
    — <key name> <base64(4-byte key hash || 64-byte Ed25519 signature over the text)>

The key hash of an Ed25519 key is ``SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]``.
Verifying follows the spec: a signature whose (name, key hash) is not a known key is ignored,
every signature by a known key must verify, and at least one must. Anything else the spec
does not allow (control characters, a missing blank line, a line that is not a signature
line after it, a note not ending in a newline) is refused with ``NoteError``.

A checkpoint's text is exactly four lines: origin, tree size (decimal, no leading zeros), the
base64 of the 32-byte root hash, and one extension line ``time <RFC 3339 UTC, seconds>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = b"\x01"  # the signed-note signature type of Ed25519
KEY_HASH_SIZE = 4
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
ROOT_SIZE = 32
MAX_SIGNATURES = 100  # the spec asks verifiers to accept at least 16
MAX_TREE_SIZE = 2**63 - 1  # what a signed 64-bit column holds
_SIG_PREFIX = "\u2014 "  # em dash, space
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
_TIME = re.compile(r"time ([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


class NoteError(ValueError):
    """A note or checkpoint that does not parse or does not verify; the message names why."""


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head: the log ``origin`` held ``size`` events with this ``root`` at ``timestamp``."""

    origin: str
    size: int
    root: bytes
    timestamp: datetime  # timezone-aware UTC, whole seconds


# --- checkpoints -------------------------------------------------------------------------------


def checkpoint_text(cp: Checkpoint) -> str:
    """The note text of a checkpoint: origin, size, root, and the ``time`` extension line."""
    if not cp.origin or _has_control(cp.origin):
        raise NoteError(f"checkpoint origin must be a non-empty line without control characters, "
                        f"not {cp.origin!r}")
    if isinstance(cp.size, bool) or not isinstance(cp.size, int) or not 0 <= cp.size <= MAX_TREE_SIZE:
        raise NoteError(f"checkpoint size must be a whole number from 0 to {MAX_TREE_SIZE}, not {cp.size!r}")
    if not isinstance(cp.root, bytes) or len(cp.root) != ROOT_SIZE:
        raise NoteError(f"checkpoint root must be {ROOT_SIZE} bytes, not {_length(cp.root)}")
    stamp = cp.timestamp
    if not isinstance(stamp, datetime) or stamp.tzinfo is None or stamp.utcoffset() is None:
        raise NoteError("checkpoint timestamp must be a timezone-aware datetime")
    if stamp.microsecond:
        raise NoteError("checkpoint timestamp must be whole seconds (the note holds no fractions)")
    try:
        stamp = stamp.astimezone(UTC)
    except OverflowError:
        raise NoteError("checkpoint timestamp is out of range") from None
    return (f"{cp.origin}\n{cp.size}\n{base64.b64encode(cp.root).decode()}\n"
            f"time {stamp.year:04d}-{stamp.month:02d}-{stamp.day:02d}T"
            f"{stamp.hour:02d}:{stamp.minute:02d}:{stamp.second:02d}Z\n")


def parse_checkpoint(text: str) -> Checkpoint:
    """The checkpoint a note text states; strict: exactly the four lines ``checkpoint_text`` writes."""
    if not isinstance(text, str):
        raise NoteError("checkpoint text must be a string")
    if not text.endswith("\n"):
        raise NoteError("checkpoint text must end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 4:
        raise NoteError(f"checkpoint has {len(lines)} lines; it needs origin, size, root hash and time")
    if len(lines) > 4:
        raise NoteError(f"checkpoint has {len(lines)} lines; only origin, size, root hash and one "
                        "'time' extension line are allowed")
    origin, size_line, root_line, time_line = lines
    if not origin or _has_control(origin):
        raise NoteError("checkpoint origin line is empty or holds control characters")
    if not _SIZE.fullmatch(size_line) or int(size_line) > MAX_TREE_SIZE:
        raise NoteError(f"checkpoint size {size_line!r} is not a decimal number without leading zeros "
                        f"(at most {MAX_TREE_SIZE})")
    root = _b64decode(root_line, "checkpoint root hash")
    if len(root) != ROOT_SIZE:
        raise NoteError(f"checkpoint root hash is {len(root)} bytes, not {ROOT_SIZE}")
    match = _TIME.fullmatch(time_line)
    if match is None:
        raise NoteError(f"checkpoint extension line {time_line!r} is not 'time YYYY-MM-DDTHH:MM:SSZ'")
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        timestamp = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as error:
        raise NoteError(f"checkpoint time {time_line[5:]!r} is not a valid date and time: {error}") from None
    return Checkpoint(origin, int(size_line), root, timestamp)


# --- signed notes ------------------------------------------------------------------------------


def key_hash(name: str, public_key: bytes) -> bytes:
    """The 4-byte key ID of an Ed25519 key under a key name, as the signed-note spec recommends."""
    _check_name(name)
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise NoteError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, not {_length(public_key)}")
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public_key).digest()[:KEY_HASH_SIZE]


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The whole signed note: ``text``, a blank line and one signature line by ``name``."""
    _check_text(text)
    public = private_key.public_key().public_bytes_raw()
    signature = private_key.sign(text.encode())
    line = base64.b64encode(key_hash(name, public) + signature).decode()
    return f"{text}\n{_SIG_PREFIX}{name} {line}\n"


def verify_note(note: str, verifiers: Mapping[bytes, tuple[str, bytes]]) -> str:
    """The text of ``note`` once a signature by a known key verifies and none by a known key fails.

    ``verifiers`` maps a key hash to (key name, raw Ed25519 public key). A signature is by a known
    key only when both its name and its key hash match; others are ignored, as the spec requires.
    """
    if not isinstance(note, str):
        raise NoteError("a note must be a string")
    _check_characters(note, "note")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line separating its text from its signatures")
    text, block = note[:split + 1], note[split + 2:]
    if not block:
        raise NoteError("note has no signature lines after its blank line")
    if not block.endswith("\n"):
        raise NoteError("note does not end in a newline after its last signature line")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signature lines, more than the {MAX_SIGNATURES} accepted")
    payload = text.encode()
    verified = 0
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_SIG_PREFIX):
            raise NoteError(f"note line {number} after the blank line is not a signature line "
                            "('\u2014 <key name> <base64 signature>')")
        name, _, encoded = line[len(_SIG_PREFIX):].partition(" ")
        if not _valid_name(name):
            raise NoteError(f"signature line {number} has an invalid key name {name!r}")
        blob = _b64decode(encoded, f"signature line {number}")
        if len(blob) <= KEY_HASH_SIZE:
            raise NoteError(f"signature line {number} is too short to hold a key hash and a signature")
        known = verifiers.get(blob[:KEY_HASH_SIZE])
        if known is None or known[0] != name:
            continue  # an unknown key (a witness, a retired or foreign key): ignored, as the spec says
        signature = blob[KEY_HASH_SIZE:]
        if len(signature) != SIGNATURE_SIZE or not _ed25519_verifies(known[1], signature, payload):
            raise NoteError(f"signature line {number} by key {name}+{blob[:KEY_HASH_SIZE].hex()} "
                            "does not verify")
        verified += 1
    if not verified:
        raise NoteError(f"note has no signature by a known key ({len(lines)} signature lines, "
                        f"none from the {len(verifiers)} keys trusted)")
    return text


# --- helpers -----------------------------------------------------------------------------------


def _ed25519_verifies(public: bytes, signature: bytes, payload: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, payload)
    except (InvalidSignature, ValueError):
        return False
    return True


def _valid_name(name: object) -> bool:
    """Non-empty, no Unicode spaces, no '+', nothing unprintable (the signed-note key name rules)."""
    return (isinstance(name, str) and name != "" and "+" not in name
            and not any(c.isspace() or not c.isprintable() for c in name) and _utf8(name))


def _check_name(name: str) -> None:
    if not _valid_name(name):
        raise NoteError(f"key name must be non-empty, without spaces, '+' or control characters, "
                        f"not {name!r}")


def _check_text(text: str) -> None:
    if not isinstance(text, str) or not text:
        raise NoteError("note text must be a non-empty string")
    if not text.endswith("\n"):
        raise NoteError("note text must end in a newline")
    _check_characters(text, "note text")


def _check_characters(value: str, what: str) -> None:
    if not _utf8(value):
        raise NoteError(f"{what} is not valid UTF-8")
    if _has_control(value.replace("\n", "")):
        raise NoteError(f"{what} holds an ASCII control character other than newline")


def _has_control(value: str) -> bool:
    return any(ord(c) < 0x20 for c in value)


def _utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def _b64decode(value: str, what: str) -> bytes:
    """Standard base64, canonical only: one byte string has exactly one accepted encoding."""
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not valid base64") from None
    if base64.b64encode(decoded).decode() != value:
        raise NoteError(f"{what} is not canonical base64")
    return decoded


def _length(value: object) -> str:
    return f"{len(value)}" if isinstance(value, bytes) else type(value).__name__
