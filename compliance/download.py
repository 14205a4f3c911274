"""The customer's side: ``/d/<token>`` (the page) and ``/d/<token>/bundle.zip`` (the file).

No login: the signed token is the credential. Every attempt, good or bad, writes
exactly one audit event (link id, outcome, IP, user agent; never the token), and
no answer may be cached or leak the URL through a Referer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, g, render_template, request, stream_with_context
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

import audit
from compliance import config, db, queues
from compliance.auth import public_endpoint
from compliance.models import DownloadLink
from exporters import crypto, delivery, links

bp = Blueprint("download", __name__)
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
REFUSALS = {
    "expired": ("This link has expired", "Download links work for a limited time, and this one has ended."),
    "revoked": ("This link was withdrawn", "The link was revoked, usually because a new one was sent."),
    "exhausted": ("This link has been used up", "It has been used for as many downloads as it allows."),
    "deleted": ("This data has been deleted", "The data of this export was permanently deleted, as the "
                "retention policy requires, so it can no longer be downloaded."),
}


def init_app(app: Flask, settings: config.Settings) -> None:
    limiter = Limiter(get_remote_address, app=app, storage_uri=_limiter_storage(settings),
                      default_limits=[], headers_enabled=True, key_prefix="offboard-limits")
    limiter.shared_limit("60 per minute", scope="download")(bp)  # one budget for page and file
    app.register_blueprint(bp)
    for endpoint in ("download.page", "download.bundle"):
        public_endpoint(app, endpoint)
    app.after_request(_private_answers)


@bp.route("/d/<token>")
def page(token: str) -> Response | tuple[str, int]:
    try:
        link = links.resolve(token)
        if links.downloads_left(link) == 0:
            raise links.LinkError("exhausted", gone=True, link=link)
        opened = delivery.open_bundle(link.export, link.bundle_sha256)
    except links.LinkError as error:
        return _refuse("download.page", error.outcome, error.gone, error.link)
    except delivery.BundleGone:
        return _refuse("download.page", "deleted", True, link)
    except delivery.BundleTampered:
        return _alarm("download.page", link)
    except delivery.BundleUnavailable:
        return _unavailable("download.page", link)
    _attempt("download.page", "ok", link)
    export, tenant = link.export, link.export.request.tenant
    return render_template(
        "download/page.html", link=link, token=token, tenant=tenant, size=opened.size,
        filename=delivery.filename(export), files=(export.manifest or {}).get("files", []),
        downloads_left=links.downloads_left(link), contact=export.request.owner,
        request_id=export.request_id)


@bp.route("/d/<token>/bundle.zip", methods=["GET", "HEAD"])
def bundle(token: str) -> Response | tuple[str, int]:  # noqa: PLR0911 -- one return per answer
    action = "download.head" if request.method == "HEAD" else "download.bundle"
    try:
        link = links.resolve(token)
        opened = delivery.open_bundle(link.export, link.bundle_sha256)
    except links.LinkError as error:
        return _refuse(action, error.outcome, error.gone, error.link)
    except delivery.BundleGone:
        return _refuse(action, "deleted", True, link)
    except delivery.BundleTampered:
        return _alarm(action, link)
    except delivery.BundleUnavailable:
        return _unavailable(action, link)
    span = _requested_range(opened)
    if span == "unsatisfiable":
        _attempt(action, "range_not_satisfiable", link)
        return Response(status=416, headers={"Content-Range": f"bytes */{opened.size}"})
    start, stop = span if span else (0, opened.size)
    try:
        opened.verify()  # nothing is sent from an object that fails its hash
    except delivery.BundleTampered:
        return _alarm(action, link)
    if request.method == "HEAD" and links.downloads_left(link) == 0:
        return _refuse(action, "exhausted", True, link)
    if request.method == "GET":
        # A whole download counts against the quota; a range (a resume) does not, but every
        # byte sent is charged to the link's byte budget (quota x bundle size).
        try:
            links.claim_download(link, stop - start, opened.size, counts=span is None or link.downloads == 0)
        except links.LinkError as error:
            return _refuse(action, error.outcome, error.gone, link)
    _attempt(action, "ok" if span is None else f"range {start}-{stop - 1}", link)
    headers = {
        "Content-Length": str(stop - start),
        "Content-Type": "application/zip",
        "Content-Disposition": f'attachment; filename="{delivery.filename(link.export)}"',
        "ETag": f'"{link.bundle_sha256}"',
        "Accept-Ranges": "bytes",
    }
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{opened.size}"
    body = None if request.method == "HEAD" else stream_with_context(_stream(opened, start, stop, link))
    return Response(body, status=206 if span else 200, headers=headers, direct_passthrough=True)


def _stream(opened: delivery.OpenBundle, start: int, stop: int, link: DownloadLink) -> Iterator[bytes]:
    link_id, export_id = link.id, link.export_id
    tenant_id, request_id = link.export.request.tenant_id, link.export.request_id
    db.session.remove()  # hold no database connection while the bytes flow
    sent = 0
    try:
        # Every segment is authenticated as it is decrypted (and the object as a whole was
        # hashed by verify), so a per-transfer hash would only halve the throughput.
        for chunk in opened.chunks(start, stop):
            yield chunk
            sent += len(chunk)
    except crypto.DecryptionError:
        _late_alarm(link_id, export_id, tenant_id, request_id, "a segment failed authentication")
        raise
    finally:  # also when the client goes away mid-transfer (the server closes this generator)
        if sent < stop - start:
            links.refund_bytes(link_id, stop - start - sent)


def _late_alarm(link_id: int, export_id: int, tenant_id: int, request_id: int, problem: str) -> None:
    """Integrity failure found while streaming: the client sees a cut transfer; legal sees this."""
    with db.transaction():
        audit.record("alarm.bundle_integrity", actor=audit.SYSTEM, tenant_id=tenant_id,
                     request_id=request_id, subject=("export", export_id),
                     data={"link_id": link_id, "problem": problem})


def _requested_range(opened: delivery.OpenBundle) -> tuple[int, int] | str | None:  # noqa: PLR0911
    """A single byte range as (start, stop), None for the whole file, or "unsatisfiable"."""
    header = request.headers.get("Range")
    if header is None:
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != f'"{opened.sha256}"':
        return None  # the file changed since the client's first part: send it whole
    match = RANGE.match(header.strip())
    if match is None:
        return None  # several ranges or another unit: RFC 9110 lets us answer with the whole
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        length = min(int(last), opened.size)
        return (opened.size - length, opened.size) if length else "unsatisfiable"
    start = int(first)
    if start >= opened.size:
        return "unsatisfiable"
    stop = min(int(last) + 1, opened.size) if last else opened.size
    return (start, stop) if stop > start else None


@dataclass(frozen=True)
class _Client:
    ip: str
    user_agent: str


def _client() -> _Client:
    return _Client(get_remote_address() or "", request.headers.get("User-Agent", "")[:300])


def _attempt(action: str, outcome: str, link: DownloadLink | None) -> None:
    """The one audit event of this attempt, committed before anything is served."""
    client = _client()
    g.link_id = link.id if link is not None else None
    export = link.export if link is not None else None
    audit.record(action, actor="customer", tenant_id=export.request.tenant_id if export else None,
                 request_id=export.request_id if export else None,
                 subject=("link", link.id) if link is not None else None,
                 data={"outcome": outcome, "ip": client.ip, "user_agent": client.user_agent})
    db.session.commit()


def _refuse(action: str, outcome: str, gone: bool, link: DownloadLink | None) -> tuple[str, int]:
    db.session.rollback()
    _attempt(action, outcome, link)
    if not gone:
        heading = "Link not found"
        explanation = "This download link is not valid. Check that it was copied whole."
    else:
        heading, explanation = REFUSALS[outcome]
    contact = link.export.request.owner if link is not None else None
    return render_template("download/refused.html", heading=heading, explanation=explanation,
                           contact=contact), 410 if gone else 404


def _alarm(action: str, link: DownloadLink) -> tuple[str, int]:
    db.session.rollback()
    _attempt(action, "integrity_failure", link)
    audit.record("alarm.bundle_integrity", actor=audit.SYSTEM, tenant_id=link.export.request.tenant_id,
                 request_id=link.export.request_id, subject=("export", link.export_id),
                 data={"link_id": link.id, "expected_sha256": link.bundle_sha256})
    db.session.commit()
    return render_template("download/refused.html", heading="This file cannot be served right now",
                           explanation="It failed an integrity check, so nothing was sent. We have been "
                                       "alerted and will send a new link.", contact=None), 503


def _unavailable(action: str, link: DownloadLink) -> tuple[str, int]:
    db.session.rollback()
    _attempt(action, "unavailable", link)
    return render_template("download/refused.html", heading="This file cannot be served right now",
                           explanation="Please try again later; if it keeps failing, ask for help.",
                           contact=link.export.request.owner), 503


def _private_answers(response: Response) -> Response:
    if request.blueprint == "download":
        response.headers.update(NO_STORE)
    return response


def _limiter_storage(settings: config.Settings) -> str:
    """The Redis the service uses, in the ``limits`` package's URL form."""
    url = settings.redis_url or "unix://" + queues.start_embedded(settings.embedded_redis_path)
    return "redis+unix://" + url.removeprefix("unix://") if url.startswith("unix://") else url
