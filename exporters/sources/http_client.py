"""The ``http`` source's transport: one request at a time, paced, retried, never leaking the token.

Only the standard library (urllib): the service gains no HTTP dependency. Redirects and
``Link`` pages are followed only within base_url's origin, because urllib would otherwise
send the credential header to whatever host a response names.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

from exporters.sources.base import Scope, SourceError, resolve_secret
from exporters.sources.http_config import PLACEHOLDER

RETRIED = frozenset({429}) | frozenset(range(500, 600))
# RFC 8288: <target>; param="value"; ... with quoted values that may hold ; and ,
LINK_PARAM = re.compile(r'\s*;\s*([^;,"=\s]+)\s*(?:=\s*("[^"]*"|[^;,"\s]*))?')
LINK = re.compile(r'<([^>]*)>((?:\s*;\s*[^;,"=\s]+\s*(?:=\s*(?:"[^"]*"|[^;,"\s]*))?)*)')
USER_AGENT = "offboard-http-source/1"


@dataclass
class Response:
    status: int
    reason: str
    headers: Message
    body: bytes
    url: str


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, f"{(parts.hostname or '').lower()}:{port}"


def with_query(url: str, params: dict[str, Any]) -> str:
    """``url`` with ``params`` set (replacing any of the same name the path already had)."""
    parts = urlsplit(url)
    kept = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
            if key not in params]
    query = urlencode(kept + [(key, str(value)) for key, value in params.items()])
    return urlunsplit(parts._replace(query=query))


def next_link(headers: Message, url: str) -> str | None:
    """The RFC 8288 ``rel="next"`` target, resolved against the request URL."""
    for value in headers.get_all("Link") or []:
        for target, params in LINK.findall(value):
            for key, rel in LINK_PARAM.findall(params):
                if key.lower() == "rel" and "next" in rel.strip('"').lower().split():
                    return urljoin(url, target.strip())
    return None


def retry_after(headers: Message) -> float | None:
    """Seconds the server asks us to wait: delta-seconds or an HTTP-date.

    A date is measured against the response's own ``Date`` header when it has one, so a
    skewed local clock does not matter; otherwise against the wall clock (a network wait
    is real time, not the service's possibly frozen business clock).
    """
    value = (headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    try:
        now = parsedate_to_datetime(headers.get("Date") or "").timestamp()
    except (TypeError, ValueError, IndexError):
        now = time.time()
    return max(0.0, when - now)


class _SameOrigin(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Message, newurl: str) -> urllib.request.Request | None:
        if origin(newurl) != origin(req.full_url):
            raise SourceError(f"{req.full_url} redirects to another origin ({origin(newurl)[1]}); "
                              "refused, so the credential is not sent there")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class HttpClient:
    """Requests against one API: the rate limit and retry budget are per source."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.base_url = config["base_url"].rstrip("/")
        self._config = config
        self._opener = urllib.request.build_opener(_SameOrigin)
        rate = config.get("rate_limit_per_second")
        self._gap = 1.0 / rate if rate else 0.0
        self._next_at = 0.0
        self._lock = threading.Lock()

    def url(self, template: str, scope: Scope | None) -> str:
        """base_url + the path, ``{tenant}``/``{subject}`` quoted so "a/b c" stays one segment."""
        values = {"tenant": scope.tenant, "subject": scope.subject} if scope else {}
        return self.base_url + PLACEHOLDER.sub(
            lambda match: quote(values.get(match.group(1)) or "", safe=""), template)

    def same_origin(self, url: str) -> bool:
        return origin(url) == origin(self.base_url)

    def request(self, method: str, url: str, allow: frozenset[int] = frozenset()) -> Response:
        """A 2xx (or allowed) answer; 429, 5xx and connection failures are retried."""
        retries = self._config["max_retries"]
        for attempt in range(retries + 1):
            self._pace()
            try:
                response = self._send(method, url)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
                reason = getattr(error, "reason", None) or error
                problem, wait = f"{method} {url} failed: {self.scrub(str(reason))}", None
            else:
                if 200 <= response.status < 300 or response.status in allow:
                    return response
                problem = self._refusal(method, response)
                if response.status not in RETRIED:
                    raise SourceError(problem)
                wait = retry_after(response.headers)
            if attempt < retries:
                time.sleep(self._delay(attempt, wait))
        tries = "1 attempt" if retries == 0 else f"{retries + 1} attempts"
        raise SourceError(f"{problem} (gave up after {tries})")

    def json(self, response: Response) -> Any:
        try:
            return json.loads(response.body)
        except ValueError as error:
            kind = response.headers.get("Content-Type", "no content type")
            raise SourceError(f"{response.url} answered {response.status} with a body that is not "
                              f"JSON ({kind}): {self._excerpt(response.body)}") from error

    def scrub(self, text: str) -> str:
        """``text`` without the credential or any long word of it but the scheme ("Bearer")."""
        token = self._token()
        if not token:
            return text
        words = token.split()
        for part in sorted({token, *(words[1:] if len(words) > 1 else words)}, key=len, reverse=True):
            if len(part) >= 4 or part == token:
                text = text.replace(part, "***")
        return text

    # -- internals -------------------------------------------------------------------------

    def _token(self) -> str | None:
        value = self._config.get("auth_token")
        return resolve_secret(value) if value else None

    def _send(self, method: str, url: str) -> Response:
        if not url.startswith(("http://", "https://")):
            raise SourceError(f"refusing to request {url}: only http and https URLs are read")
        request = urllib.request.Request(url, method=method, headers={  # noqa: S310 - checked
            "Accept": "application/json", "User-Agent": USER_AGENT})
        token = self._token()
        if token is not None:
            if any(char in token for char in "\r\n\0"):
                raise SourceError("the auth_token holds a line break, which no header may hold")
            request.add_header(self._config["auth_header"], token)
        limit = self._config["max_page_bytes"]
        try:
            with self._opener.open(request, timeout=self._config["timeout_seconds"]) as answer:
                status, reason, headers = answer.status, answer.reason, answer.headers
                body = answer.read(limit + 1)
        except urllib.error.HTTPError as error:  # a non-2xx answer: its body explains it
            status, reason, headers = error.code, str(error.reason), error.headers
            body = error.read(limit + 1) if error.fp is not None else b""
            error.close()
        except ValueError as error:  # an URL urllib cannot send
            raise SourceError(f"cannot request {url}: {self.scrub(str(error))}") from None
        if len(body) > limit:
            raise SourceError(f"{url} answered more than max_page_bytes ({limit}); "
                              "ask for smaller pages or raise the limit")
        return Response(status, reason, headers, body, url)

    def _pace(self) -> None:
        """At most rate_limit_per_second request starts: each waits for its reserved slot."""
        if not self._gap:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_at)
            self._next_at = start + self._gap
        if start > now:
            time.sleep(start - now)

    def _delay(self, attempt: int, asked: float | None) -> float:
        """Retry-After as given, else exponential backoff with jitter; both capped."""
        cap = self._config["max_backoff_seconds"]
        if asked is not None:
            return min(asked, cap)
        ceiling = min(cap, self._config["backoff_seconds"] * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto

    def _refusal(self, method: str, response: Response) -> str:
        reason = f" {response.reason}" if response.reason else ""
        excerpt = self._excerpt(response.body)
        hint = (f" (check auth_token, sent as the {self._config['auth_header']} header)"
                if response.status in (401, 403) else "")
        return (f"{method} {response.url} answered {response.status}{reason}{hint}"
                + (f": {excerpt}" if excerpt else ""))

    def _excerpt(self, body: bytes) -> str:
        text = " ".join(body[:2000].decode("utf-8", "replace").split())
        text = self.scrub(text)
        return text if len(text) <= 200 else text[:199] + "…"
