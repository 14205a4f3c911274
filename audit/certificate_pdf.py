"""The human-readable copy of a deletion certificate (fpdf2): what was deleted, where and when,
what was kept and why, the policy, and how to verify the signed original.

The PDF is a rendering of the signed payload, never a second source: every line comes from the
envelope as issued. It is deterministic (the creation date is the issue time, fpdf2 derives the
file /ID from the content), so the same certificate always gives the same bytes.

Fonts, pages and tables as in the bundle report, from ``compliance/typeset.py``: DejaVu Sans / Sans
Mono when found in a usual system font directory, else the core fonts with non-latin-1 characters as ``?``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from audit import keys, notes
from compliance import config
from compliance.models import DeletionCertificate
from compliance.typeset import Document

KIND_TITLES = {"primary": "Primary systems (the purge 90 days after closure)",
               "backups": "Backups (the purge within 12 months after closure)"}
STATUS_TITLES = {"erased": "Erased: every system in scope was erased",
                 "erased_with_exceptions": "Erased with exceptions (listed below)",
                 "failed": "Failed: nothing was erased (see the exceptions below)"}


def render_pdf(certificate: DeletionCertificate) -> bytes:
    """The certificate as a PDF, from the envelope as issued."""
    envelope = json.loads(certificate.envelope)
    payload = json.loads(base64.b64decode(envelope["payload"]))
    settings = config.current()
    public = keys.public_keys(settings).get(certificate.key_id)
    return bytes(_Certificate(payload, public, settings.public_url).render())


class _Certificate(Document):
    def __init__(self, payload: dict[str, Any], public: bytes | None, public_url: str) -> None:
        name = f"Deletion certificate {payload['certificate_id']}"  # the title and every page's footer
        super().__init__(name, datetime.fromisoformat(payload["issued_at"]), name)
        self.payload, self.public, self.public_url = payload, public, public_url

    def render(self) -> bytearray:
        self.add_page()
        self._summary()
        self._systems()
        self._exceptions()
        self.heading("Policy")
        self.paragraph(self.payload["policy"])
        self.paragraph("A legal hold postpones deletion of the data it covers until it is released; such "
                       "data is listed above as retained, with the hold's reason and legal basis.")
        self._verification()
        return self.output()

    # -- sections ------------------------------------------------------------------------

    def _summary(self) -> None:
        p = self.payload
        self.heading("Deletion certificate", 22)
        self.paragraph(STATUS_TITLES.get(p["status"], p["status"]), 12)
        rows = [("Certificate", p["certificate_id"]), ("Kind", KIND_TITLES.get(p["kind"], p["kind"])),
                ("Status", p["status"]), ("Tenant", p["tenant_id"]), ("Request", p["request_id"]),
                ("Purge completed", _when(p["purged_at"])), ("Issued at", _when(p["issued_at"])),
                ("Issued by", p["issued_by"]), ("Issuer (audit log)", p["issuer"]),
                ("Signing key", p["key_id"]),
                ("Data categories", ", ".join(p["data_categories"]) or "none")]
        self._table(None, [[label, value] for label, value in rows], (40, 140))

    def _systems(self) -> None:
        self.heading("What was deleted, where and when")
        rows = [[s["name"], s["method"], _when(s["started_at"]), _when(s["finished_at"]),
                 _counts(s["removed"]), _counts(s["verification"]["remaining"]),
                 s["status"].replace("_", " "), ", ".join(map(str, s["events"]))]
                for s in self.payload["systems"]]
        self._table(["System", "Method", "Started", "Finished", "Removed", "Left after erase", "Status",
                     "Events"], rows, (26, 18, 22, 22, 30, 28, 20, 14), size=7.5)

    def _exceptions(self) -> None:
        p = self.payload
        self.heading("Exceptions and retained data")
        if not p["exceptions"]:
            self.paragraph("None: every system in scope was erased and nothing was retained.")
        for number, exception in enumerate(p["exceptions"], start=1):
            self.paragraph(f"{number}. {exception}")
        if p["retained"]:
            rows = [[r["hold_id"], r["reason"], r["matter"], r["legal_basis"], _when(r["placed_at"]),
                     ", ".join(r["systems"]) or "-"] for r in p["retained"]]
            self._table(["Legal hold", "Reason", "Matter", "Legal basis", "Placed", "Systems"], rows,
                        (22, 34, 26, 46, 24, 28), size=8)

    def _verification(self) -> None:
        p, evidence = self.payload, self.payload["evidence"]
        head = notes.parse_checkpoint(evidence["checkpoint"][:evidence["checkpoint"].index("\n\n") + 1])
        fingerprint = hashlib.sha256(self.public).hexdigest() if self.public else "unknown key"
        public = base64.urlsafe_b64encode(self.public).rstrip(b"=").decode() if self.public else "-"
        self.heading("Verification")
        self.paragraph("The signed original of this certificate is its JSON file (a DSSE envelope signed "
                       "with Ed25519). It holds its own evidence: the audit events it rests on, their "
                       "inclusion proofs, and a signed checkpoint of the audit log. Anyone can check it "
                       "offline with our public key alone.")
        rows = [("Certificate id", p["certificate_id"]), ("Signing key id", p["key_id"]),
                ("Key fingerprint (SHA-256)", " ".join(fingerprint[i:i + 8] for i in range(0, 64, 8))),
                ("Public key (JWK x)", public),
                ("Checkpoint", f"{head.origin}, {head.size} events, signed "
                               f"{_when(head.timestamp.isoformat())}"),
                ("Checkpoint root", base64.b64encode(head.root).decode()),
                ("Evidence events", ", ".join(str(e["index"]) for e in evidence["events"]))]
        self._table(None, [[label, value] for label, value in rows], (45, 135), mono_last=True)
        self.heading("How to verify", 11)
        keys_url = f"{self.public_url}/.well-known/offboard/keys"
        for step in (f"1. Download the public keys (JWKS) from {keys_url} and check that the key "
                     f"{p['key_id']} has the fingerprint above (the SHA-256 of its 32 raw bytes; the key "
                     "id is its first 16 hex characters).",
                     "2. With Offboard's tool: offboard cert verify "
                     f"deletion-certificate-{p['certificate_id']}.json --key keys.json",
                     f"3. Or paste the JSON file to POST {self.public_url}/api/v1/certificates/verify.",
                     "4. Or without our code: docs/verify-a-certificate.md shows 30 lines of Python and the "
                     "openssl commands that check the signature, the checkpoint and every inclusion proof."):
            self.paragraph(step, 9)


def _when(value: str | None) -> str:
    """An ISO 8601 time for people: 2026-03-02 09:00:00 UTC."""
    if not value:
        return "-"
    try:
        return f"{datetime.fromisoformat(value).astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    except ValueError:
        return value


def _counts(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "not verified"
    return ", ".join(f"{name}: {count:,}" for name, count in counts.items()) or "-"
