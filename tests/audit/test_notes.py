"""C2SP signed notes and tlog checkpoints: published vectors, round trips, and every kind of
tampering refused with NoteError."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import notes
from audit.notes import Checkpoint, NoteError

# Vectors from golang.org/x/mod/sumdb/note (note_test.go), the reference implementation of
# https://c2sp.org/signed-note: a private key ("PRIVATE+KEY+<name>+<hash>+base64(0x01 || seed)"),
# verifier keys ("<name>+<hash>+base64(0x01 || public key)") and the note Go signs.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
PETER_SIG = ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKv"
             "qfqdngotpRZb6KE6RyyBwJnAM=\n")
ENOCH_SIG = ("\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTG"
             "wnWLox33WWd1RvMc+QQ=\n")

ORIGIN = "offboard.example/audit"
ROOT = bytes(range(32))
AT = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)


def verifier_key(vkey: str) -> tuple[str, bytes, bytes]:
    """(name, key hash, raw public key) from a Go verifier key string."""
    name, hash_hex, encoded = vkey.split("+", 2)
    raw = base64.b64decode(encoded)
    assert raw[0] == 1  # the Ed25519 signature type
    return name, bytes.fromhex(hash_hex), raw[1:]


def peter_private() -> Ed25519PrivateKey:
    raw = base64.b64decode(PETER_SKEY.split("+", 4)[4])
    assert raw[0] == 1
    return Ed25519PrivateKey.from_private_bytes(raw[1:])


def verifiers_for(*keys: tuple[str, bytes]) -> dict[bytes, tuple[str, bytes]]:
    return {notes.key_hash(name, public): (name, public) for name, public in keys}


@pytest.fixture(scope="module")
def log_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def log_verifiers(log_key: Ed25519PrivateKey) -> dict[bytes, tuple[str, bytes]]:
    return verifiers_for((ORIGIN, log_key.public_key().public_bytes_raw()))


@pytest.fixture(scope="module")
def signed(log_key: Ed25519PrivateKey) -> str:
    """A checkpoint note signed by the log's key."""
    return notes.sign_note(notes.checkpoint_text(Checkpoint(ORIGIN, 1234, ROOT, AT)), ORIGIN, log_key)


def split(note: str) -> tuple[str, str]:
    text, _, signatures = note.rpartition("\n\n")
    return text + "\n", signatures


def resigned_line(line: str, change: int) -> str:
    """A signature line with the byte at ``change`` (of key hash || signature) flipped."""
    prefix, encoded = line.rsplit(" ", 1)
    blob = bytearray(base64.b64decode(encoded))
    blob[change] ^= 0x01
    return f"{prefix} {base64.b64encode(bytes(blob)).decode()}"


# --- published vectors -------------------------------------------------------------------------


def test_key_hash_matches_the_published_vectors() -> None:
    for vkey in (PETER_VKEY, ENOCH_VKEY):
        name, hashed, public = verifier_key(vkey)
        assert notes.key_hash(name, public) == hashed
    assert peter_private().public_key().public_bytes_raw() == verifier_key(PETER_VKEY)[2]


def test_sign_note_produces_the_reference_implementations_note_byte_for_byte() -> None:
    assert notes.sign_note(GO_TEXT, "PeterNeumann", peter_private()) == GO_TEXT + "\n" + PETER_SIG


def test_reference_notes_verify_and_unknown_signers_are_ignored() -> None:
    peter_name, _, peter = verifier_key(PETER_VKEY)
    enoch_name, _, enoch = verifier_key(ENOCH_VKEY)
    both_signed = GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert notes.verify_note(both_signed, verifiers_for((peter_name, peter))) == GO_TEXT
    assert notes.verify_note(both_signed, verifiers_for((enoch_name, enoch))) == GO_TEXT
    assert notes.verify_note(both_signed, verifiers_for((peter_name, peter), (enoch_name, enoch))) == GO_TEXT
    with pytest.raises(NoteError, match="no signature by a known key"):
        notes.verify_note(both_signed, {})


def test_reference_note_with_a_corrupted_signature_is_refused() -> None:
    """Go's own "invalid signature" case: four characters spliced into Peter's signature."""
    peter_name, _, peter = verifier_key(PETER_VKEY)
    corrupted = GO_TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(NoteError, match="does not verify"):
        notes.verify_note(corrupted, verifiers_for((peter_name, peter)))


@pytest.mark.parametrize("bad", [
    GO_TEXT,  # no signatures at all
    GO_TEXT + "\n",  # a blank line and nothing after it
    GO_TEXT + "\n" + PETER_SIG[:-1],  # the last line does not end in a newline
    "\x01" + GO_TEXT + "\n" + PETER_SIG,  # a control character
    GO_TEXT + "\n" + "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
                     "qdngotpRZb6KE6RyyBwJnAM=\n",
    GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
], ids=["no-signatures", "blank-line-only", "no-final-newline", "control-character", "name-with-space",
        "unexpected-line"])
def test_reference_malformed_notes_are_refused(bad: str) -> None:
    """The malformed notes Go's tests refuse."""
    peter_name, _, peter = verifier_key(PETER_VKEY)
    with pytest.raises(NoteError):
        notes.verify_note(bad, verifiers_for((peter_name, peter)))


# --- round trips -------------------------------------------------------------------------------


def test_checkpoint_text_is_the_c2sp_format() -> None:
    text = notes.checkpoint_text(Checkpoint(ORIGIN, 1234, ROOT, AT))
    assert text == (f"{ORIGIN}\n1234\n{base64.b64encode(ROOT).decode()}\ntime 2026-11-24T20:00:00Z\n")


def test_checkpoint_round_trips_through_a_signed_note(
        signed: str, log_verifiers: dict[bytes, tuple[str, bytes]], log_key: Ed25519PrivateKey) -> None:
    text, signatures = split(signed)
    assert signed.count("\n\n") == 1
    key_hash = notes.key_hash(ORIGIN, log_key.public_key().public_bytes_raw())
    assert signatures == (f"\u2014 {ORIGIN} " + base64.b64encode(
        key_hash + log_key.sign(text.encode())).decode() + "\n")
    verified = notes.verify_note(signed, log_verifiers)
    assert notes.parse_checkpoint(verified) == Checkpoint(ORIGIN, 1234, ROOT, AT)


def test_empty_tree_and_other_time_zones() -> None:
    eastern = timezone(timedelta(hours=-5))
    checkpoint = Checkpoint(ORIGIN, 0, ROOT, datetime(2026, 11, 24, 15, 0, tzinfo=eastern))
    text = notes.checkpoint_text(checkpoint)
    assert text.endswith("\n0\n" + base64.b64encode(ROOT).decode() + "\ntime 2026-11-24T20:00:00Z\n")
    parsed = notes.parse_checkpoint(text)
    assert parsed == checkpoint and parsed.timestamp.tzinfo is UTC and parsed.size == 0


def test_texts_with_empty_lines_are_signed_and_verified_as_the_spec_allows(
        log_key: Ed25519PrivateKey, log_verifiers: dict[bytes, tuple[str, bytes]]) -> None:
    text = "first\n\nthird after an empty line\n"
    assert notes.verify_note(notes.sign_note(text, ORIGIN, log_key), log_verifiers) == text


def test_a_known_signature_next_to_unknown_ones_verifies(
        signed: str, log_verifiers: dict[bytes, tuple[str, bytes]]) -> None:
    text, signatures = split(signed)
    witness = notes.sign_note(text, "witness.example/w1", Ed25519PrivateKey.generate())
    _, witness_line = split(witness)
    assert notes.verify_note(text + "\n" + witness_line + signatures, log_verifiers) == text
    assert notes.verify_note(text + "\n" + signatures + witness_line, log_verifiers) == text


# --- tampering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), [
    (ORIGIN, "offboard.example/other"),
    ("\n1234\n", "\n1235\n"),
    (base64.b64encode(ROOT).decode(), base64.b64encode(bytes(32)).decode()),
    ("2026-11-24T20:00:00Z", "2026-11-24T20:00:01Z"),
    ("Z\n\n", "Z\nextra line\n\n"),  # an extra extension line
    ("\ntime 2026-11-24T20:00:00Z\n", "\n"),  # the time line removed
], ids=["origin", "size", "root", "timestamp", "extra-line", "missing-line"])
def test_a_changed_checkpoint_does_not_verify(
        signed: str, log_verifiers: dict[bytes, tuple[str, bytes]], old: str, new: str) -> None:
    tampered = signed.replace(old, new, 1)
    assert tampered != signed
    with pytest.raises(NoteError):
        notes.verify_note(tampered, log_verifiers)


def test_a_signed_checkpoint_with_an_extra_or_missing_line_does_not_parse(
        log_key: Ed25519PrivateKey, log_verifiers: dict[bytes, tuple[str, bytes]]) -> None:
    text = notes.checkpoint_text(Checkpoint(ORIGIN, 1234, ROOT, AT))
    lines = text.splitlines(keepends=True)
    for changed in (text + "another extension\n", "".join(lines[:3]), "".join(lines[:2])):
        verified = notes.verify_note(notes.sign_note(changed, ORIGIN, log_key), log_verifiers)
        with pytest.raises(NoteError, match="lines"):
            notes.parse_checkpoint(verified)


@pytest.mark.parametrize("position", [4, 5, 40, 67])
def test_a_changed_signature_byte_does_not_verify(
        signed: str, log_verifiers: dict[bytes, tuple[str, bytes]], position: int) -> None:
    text, signatures = split(signed)
    tampered = text + "\n" + resigned_line(signatures.rstrip("\n"), position) + "\n"
    with pytest.raises(NoteError, match="does not verify"):
        notes.verify_note(tampered, log_verifiers)


def test_a_changed_key_hash_byte_leaves_no_known_signature(
        signed: str, log_verifiers: dict[bytes, tuple[str, bytes]]) -> None:
    text, signatures = split(signed)
    tampered = text + "\n" + resigned_line(signatures.rstrip("\n"), 0) + "\n"
    with pytest.raises(NoteError, match="no signature by a known key"):
        notes.verify_note(tampered, log_verifiers)


def test_a_signature_from_an_unknown_key_only_is_refused(
        signed: str, log_verifiers: dict[bytes, tuple[str, bytes]]) -> None:
    text, _ = split(signed)
    stranger = notes.sign_note(text, ORIGIN, Ed25519PrivateKey.generate())  # same name, other key
    with pytest.raises(NoteError, match="no signature by a known key"):
        notes.verify_note(stranger, log_verifiers)


def test_a_signature_line_with_a_wrong_key_name_is_refused(
        signed: str, log_verifiers: dict[bytes, tuple[str, bytes]]) -> None:
    renamed = signed.replace(f"\u2014 {ORIGIN} ", "\u2014 offboard.example/impostor ")
    with pytest.raises(NoteError, match="no signature by a known key"):
        notes.verify_note(renamed, log_verifiers)


def test_a_bad_signature_by_a_known_key_fails_even_next_to_a_good_one(
        signed: str, log_verifiers: dict[bytes, tuple[str, bytes]]) -> None:
    text, signatures = split(signed)
    bad = resigned_line(signatures.rstrip("\n"), 10) + "\n"
    with pytest.raises(NoteError, match=r"line 2 .* does not verify"):
        notes.verify_note(text + "\n" + signatures + bad, log_verifiers)


@pytest.mark.parametrize("ending", [
    "garbage", "garbage\n", "\n", "\n\n", " \n", "\u2014 \n", "\u2014 name\n", "\u2014 name !!!!\n",
    "\u2014 name AAAA\n", "\u2014 name AAAAAAB=\n", "\u2014 name  AAAAAAAAAAAA\n", "\r\n",
], ids=["garbage", "garbage-line", "blank", "blanks", "space", "dash", "no-signature", "not-base64",
        "short", "non-canonical-base64", "two-spaces", "carriage-return"])
def test_trailing_garbage_is_refused(
        signed: str, log_verifiers: dict[bytes, tuple[str, bytes]], ending: str) -> None:
    with pytest.raises(NoteError):
        notes.verify_note(signed + ending, log_verifiers)


def test_signature_lines_without_the_blank_line_or_with_a_bad_dash_are_refused(
        signed: str, log_verifiers: dict[bytes, tuple[str, bytes]]) -> None:
    text, signatures = split(signed)
    with pytest.raises(NoteError, match="blank line"):
        notes.verify_note(text + signatures, log_verifiers)
    with pytest.raises(NoteError, match="not a signature line"):
        notes.verify_note(text + "\n" + signatures.replace("\u2014", "-"), log_verifiers)
    with pytest.raises(NoteError, match="not a signature line"):
        notes.verify_note(text + "\n" + " " + signatures, log_verifiers)


def test_too_many_signature_lines_are_refused(
        signed: str, log_verifiers: dict[bytes, tuple[str, bytes]]) -> None:
    text, signatures = split(signed)
    assert notes.verify_note(text + "\n" + signatures * 16, log_verifiers) == text  # the spec's minimum
    with pytest.raises(NoteError, match="more than"):
        notes.verify_note(text + "\n" + signatures * (notes.MAX_SIGNATURES + 1), log_verifiers)


def test_lone_surrogates_are_not_utf8(signed: str, log_verifiers: dict[bytes, tuple[str, bytes]]) -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        notes.verify_note("\udc80" + signed, log_verifiers)


# --- strict checkpoint parsing -----------------------------------------------------------------


def checkpoint_lines(origin: str = ORIGIN, size: str = "1234", root: str | None = None,
                     time: str = "time 2026-11-24T20:00:00Z") -> str:
    root = base64.b64encode(ROOT).decode() if root is None else root
    return f"{origin}\n{size}\n{root}\n{time}\n"


@pytest.mark.parametrize("size", ["01", "00", "007", "+1", "-1", " 1", "1 ", "1_000", "0x10", "1e3", "",
                                  "\u0661", "\uff11", "9223372036854775808", "1" * 5000])
def test_sizes_that_are_not_plain_decimal_are_refused(size: str) -> None:
    with pytest.raises(NoteError, match="size"):
        notes.parse_checkpoint(checkpoint_lines(size=size))


def test_largest_size_parses() -> None:
    assert notes.parse_checkpoint(checkpoint_lines(size=str(2**63 - 1))).size == 2**63 - 1


@pytest.mark.parametrize("root", [bytes(31), bytes(33), b""])
def test_roots_that_are_not_32_bytes_are_refused(root: bytes) -> None:
    with pytest.raises(NoteError, match="root"):
        notes.parse_checkpoint(checkpoint_lines(root=base64.b64encode(root).decode()))
    with pytest.raises(NoteError, match="root"):
        notes.checkpoint_text(Checkpoint(ORIGIN, 1, root, AT))


def non_zero_padding_bits(encoded: str) -> str:
    """The same bytes, with the unused low bits of the last base64 character set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet[alphabet.index(encoded[-2]) | 1]
    assert last != encoded[-2]
    return encoded[:-2] + last + "="


@pytest.mark.parametrize("root", [
    base64.b64encode(ROOT).decode().rstrip("="),  # unpadded
    base64.urlsafe_b64encode(b"\xff" * 32).decode(),  # base64url
    non_zero_padding_bits(base64.b64encode(ROOT).decode()),
    " " + base64.b64encode(ROOT).decode(),
])
def test_roots_that_are_not_canonical_base64_are_refused(root: str) -> None:
    with pytest.raises(NoteError, match="root"):
        notes.parse_checkpoint(checkpoint_lines(root=root))


@pytest.mark.parametrize("time", [
    "time 2026-11-24T20:00:00.5Z", "time 2026-11-24T20:00:00+00:00", "time 2026-11-24T20:00:00z",
    "time 2026-11-24 20:00:00Z", "time 2026-02-30T20:00:00Z", "time 2026-11-24T24:00:00Z",
    "time 2026-11-24T20:00:60Z", "time  2026-11-24T20:00:00Z", "Time 2026-11-24T20:00:00Z",
    "time 0000-01-01T00:00:00Z", "timestamp 2026-11-24T20:00:00Z", "",
])
def test_times_that_are_not_rfc3339_utc_seconds_are_refused(time: str) -> None:
    with pytest.raises(NoteError):
        notes.parse_checkpoint(checkpoint_lines(time=time))


@pytest.mark.parametrize("text", [
    checkpoint_lines()[:-1],  # no final newline
    checkpoint_lines() + "\n",  # an empty extension line
    checkpoint_lines() + "time 2026-11-24T20:00:00Z\n",  # a second extension line
    "\n" + checkpoint_lines(),
    checkpoint_lines(origin=""),
    checkpoint_lines(origin="bad\rorigin"),
    checkpoint_lines().replace("\n", "\r\n"),
    "",
], ids=["no-final-newline", "empty-line", "two-extensions", "leading-blank", "empty-origin", "control",
        "crlf", "empty"])
def test_checkpoint_texts_with_anything_extra_or_missing_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        notes.parse_checkpoint(text)


def test_checkpoints_that_cannot_be_written_are_refused() -> None:
    for bad in (Checkpoint("", 1, ROOT, AT), Checkpoint("a\nb", 1, ROOT, AT),
                Checkpoint(ORIGIN, -1, ROOT, AT), Checkpoint(ORIGIN, 2**63, ROOT, AT),
                Checkpoint(ORIGIN, True, ROOT, AT),  # type: ignore[arg-type]
                Checkpoint(ORIGIN, 1, ROOT, AT.replace(tzinfo=None)),
                Checkpoint(ORIGIN, 1, ROOT, AT.replace(microsecond=1))):
        with pytest.raises(NoteError):
            notes.checkpoint_text(bad)


# --- signing rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "no final newline", "tab\tinside\n", "\x00\n"])
def test_texts_the_spec_does_not_allow_are_not_signed(text: str, log_key: Ed25519PrivateKey) -> None:
    with pytest.raises(NoteError, match="text"):
        notes.sign_note(text, ORIGIN, log_key)


@pytest.mark.parametrize("name", ["", "with space", "with+plus", "tab\tname", "nbsp\u00a0name", "line\nname"])
def test_key_names_the_spec_does_not_allow_are_refused(name: str, log_key: Ed25519PrivateKey) -> None:
    with pytest.raises(NoteError, match="key name"):
        notes.sign_note("text\n", name, log_key)
    with pytest.raises(NoteError, match="key name"):
        notes.key_hash(name, bytes(32))


def test_key_hash_needs_a_32_byte_public_key() -> None:
    with pytest.raises(NoteError, match="32 bytes"):
        notes.key_hash(ORIGIN, bytes(31))
    assert len(notes.key_hash(ORIGIN, bytes(32))) == 4
    assert notes.key_hash(ORIGIN, bytes(32)) != notes.key_hash(ORIGIN + "x", bytes(32))


def test_note_error_is_a_value_error() -> None:
    assert issubclass(NoteError, ValueError)
