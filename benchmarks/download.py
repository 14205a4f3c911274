"""Download speed and memory of ``GET /d/<token>/bundle.zip`` against nginx serving the same file.

Run it with the project installed (``pip install -e .``) from the repository root::

    python benchmarks/download.py [--size-mb 1024] [--small-mb 64] [--repeat 3] [--concurrency 8]

It reads ``TEST_DATABASE_URL`` (default postgresql+psycopg://postgres@127.0.0.1:5432/test; only
used to create and drop a private database next to it) and ``TEST_REDIS_URL`` (default
redis://127.0.0.1:6379/0; the server gets a database of its own on that Redis server, the first
empty one from 15 down or ``--redis-db``, emptied at the end). It needs ``curl`` and ``nginx``
(Debian: ``apt-get install -y nginx-light``); ``--profile`` needs py-spy (``pip install py-spy``).

What it does (see docs/performance.md, "Download"):

1. creates a private PostgreSQL database (``--sqlite``: a SQLite file instead) and a private
   instance dir with its own storage and keys; in-process, migrates it, creates one tenant per
   size with a ready export whose bundle is ``--size-mb`` (and ``--small-mb``) MiB of seeded
   pseudo-random hex text (deflate shrinks it to 56 %) sealed with ``exporters.delivery.seal``
   and published under the export's ``bundle_name``, and issues one link per bundle
   (``exporters.links.issue``) good for every download the run makes;
2. starts the production server exactly as ``offboard run`` does (``launcher.web_argv``:
   ``python -m gunicorn --workers N --threads 8 ... 'compliance.app:create_app()'``, N one per
   core unless ``OFFBOARD_WEB_WORKERS`` says, OFFBOARD_ENV=production) on a free loopback port,
   and nginx (``daemon off``, ``sendfile on``) serving the plaintext files;
3. times ``curl -s -o /dev/null -w '%{speed_download}'``: at ``--small-mb`` first (the first
   download, checked against the plaintext's sha256, then ``--repeat`` single streams, then
   ``--concurrency`` curls at once), then at ``--size-mb``: the object's first download apart
   (the server verifies a new object once), then ``--repeat`` rounds of one stream from nginx,
   one from Offboard, ``--concurrency`` curls at once against nginx, the same against Offboard
   (aggregate = all bytes / wall time); the median of each counts. Downloads are paced to stay
   under the rate limit (60 a minute);
4. samples the gunicorn workers' memory (/proc/<pid>/status every 20 ms, and the VmHWM after
   each size; the largest worker counts), the CPU time of all the serving processes and of
   curl, and how busy the machine is;
5. ``--profile``: runs py-spy on the first worker during five more single streams and one more
   concurrent round, and prints where the serving threads spend their time.

Throughput is in MB/s of 10^6 bytes (curl's speed_download / 1e6); sizes and memory in MiB.
It prints a table, then, as its last line, one JSON object with the numbers. Every process it
started, the database, the Redis database and the temporary directory are removed at the end,
also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

# Run as a script, this folder is first on sys.path, where benchmarks/audit.py would hide the
# ``audit`` package the service imports.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MIB = 1024 * 1024
TARGET_MB_S, TARGET_RATIO, TARGET_CONCURRENT, RSS_FLAT = 300.0, 0.25, 1.5, 0.20
RATE_LIMIT = 55  # downloads per 61 s; the download blueprint allows 60 a minute per client address
SEED = 20261124
PROFILE_SINGLE = 5  # single-stream downloads under the profiler (one is over in half a second)
ACTOR = "benchmark"


# -- pieces that need cleaning up ---------------------------------------------------------------


class Resources:
    """Everything this run starts or creates, removed by ``close`` in reverse order."""

    def __init__(self) -> None:
        self.work: Path | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        self.admin_url: str | None = None
        self.database: str | None = None
        self.redis_url: str | None = None
        self.logs: list[Path] = []  # shown when the run fails, before the work dir goes

    def spawn(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        # Own process group: a Ctrl-C reaches only this script, which stops each child once.
        process = subprocess.Popen(argv, process_group=0, **kwargs)
        self.processes.append(process)
        return process

    def close(self) -> None:
        """Each step on its own, so one failure does not leave the rest behind."""
        steps: list[tuple[str, Any]] = [
            (f"stop {process.args[0]}", lambda process=process: stop(process))  # type: ignore[misc]
            for process in reversed(self.processes)]
        steps += [("close the app's connections", _dispose_app_db),
                  ("drop the database", self._drop_database),
                  ("empty the Redis database", self._release_redis),
                  ("remove the work dir", self._remove_work)]
        for name, step in steps:
            try:
                step()
            except Exception as error:  # report, and go on cleaning
                print(f"cleanup: could not {name}: {error}", file=sys.stderr)
        self.processes.clear()

    def _drop_database(self) -> None:
        if self.database is not None and self.admin_url is not None:
            admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
            finally:
                admin.dispose()
            self.database = None

    def _release_redis(self) -> None:
        if self.redis_url is not None:
            release_redis_db(self.redis_url)
            self.redis_url = None

    def _remove_work(self) -> None:
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None


def _dispose_app_db() -> None:
    from compliance import db  # the in-process engine may still hold a connection

    db.dispose()


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM (gunicorn and nginx both stop gracefully on it), then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


REDIS_MARKER = "offboard-bench-download:owner"


def private_redis_db(url: str, wanted: int | None) -> str:
    """``url``'s server with a database of our own: ``wanted``, or the first empty one from 15
    down, claimed with a marker key. The server keeps its rate-limit counters (and anything else
    it caches) there, so they never meet the test suite's or another run's."""
    from redis import Redis

    parsed = re.match(r"^(rediss?://[^/?#]*)(?:/(\d*))?$", url)
    if parsed is None:
        raise SystemExit(f"TEST_REDIS_URL must look like redis://host:port/db, not {url!r}")
    server, shared = parsed.group(1), int(parsed.group(2) or 0)
    # Not the suite's database, nor 14 (the e2e tests flush it).
    candidates = [wanted] if wanted is not None else [i for i in range(15, 0, -1) if i not in (shared, 14)]
    for index in candidates:
        client = Redis.from_url(f"{server}/{index}")
        try:
            empty = wanted is None and client.dbsize() == 0
            if wanted is not None or (empty and client.set(REDIS_MARKER, os.getpid(), nx=True)):
                client.set(REDIS_MARKER, os.getpid())
                return f"{server}/{index}"
        finally:
            client.close()
    raise SystemExit(f"no empty Redis database on {server}: name one with --redis-db")


def release_redis_db(url: str) -> None:
    """Empty the claimed database, if it is still ours."""
    from redis import Redis

    client = Redis.from_url(url)
    try:
        if client.get(REDIS_MARKER) is not None:
            client.flushdb()
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the data -----------------------------------------------------------------------------------


def make_plain(path: Path, size_mb: int, seed: int) -> str:
    """``size_mb`` MiB of hex text of seeded random bytes (deflate shrinks it to 56 %); its sha256."""
    rng, digest = random.Random(seed), hashlib.sha256()  # noqa: S311  (test data, not secrets)
    with open(path, "wb") as handle:
        for _ in range(size_mb):
            block = rng.randbytes(MIB // 2).hex().encode("ascii")
            digest.update(block)
            handle.write(block)
    return digest.hexdigest()


def setup_app(env: dict[str, str], bundles: dict[str, tuple[Path, str]], downloads: dict[str, int]
              ) -> dict[str, list[str]]:
    """Migrate the private database; per bundle a tenant, a ready export sealed into storage and
    links enough for ``downloads`` GETs. Returns the tokens per bundle label."""
    from compliance import clock, config, db, queues, schema, workflow
    from compliance.models import Export, Tenant
    from exporters import delivery, links
    from exporters.storage import open_storage

    settings = config.use(config.load({**env, "OFFBOARD_ENV": "test"}))  # test: makes a master key
    schema.upgrade(settings.database_url)
    db.configure(settings.database_url)
    queues.configure(settings)
    storage = open_storage(settings.storage)
    tokens: dict[str, list[str]] = {}
    try:
        for label, (plain, sha256) in bundles.items():
            with db.transaction() as session:
                tenant = Tenant(external_ref=f"bench-download-{label}", name=f"Download {label}",
                                region="DE", contact_email="it@bench.test")
                session.add(tenant)
                session.flush()
                request = workflow.open_request(
                    tenant, actor=ACTOR, requested_by="cfo@bench.test", channel="email",
                    churn_reason="price", formats=["csv"], owner="csm@bench.test")
                for action in ("acknowledge", "verify", "approve", "start_export"):
                    workflow.apply(request.id, action, actor=ACTOR,
                                   reason="benchmark" if action == "verify" else None)
                export = Export(request_id=request.id, status="running", formats=["csv"],
                                created_by=ACTOR, started_at=clock.now())
                session.add(export)
                session.flush()
                name = f"exports/{export.id}/bundle.zip.obx"
                sealed = Path(settings.storage) / "build" / f".{export.id}.obx"
                sealed.parent.mkdir(parents=True, exist_ok=True)
                delivery.seal(plain, sealed, tenant_id=tenant.id, sha256=sha256, actor=ACTOR)
                storage.publish(name, sealed)
                export.status, export.finished_at = "ready", clock.now()
                export.bundle_name, export.bundle_sha256 = name, sha256
                export.bundle_bytes, export.manifest = plain.stat().st_size, {"files": []}
                workflow.apply(request.id, "mark_ready", actor=ACTOR)
                tokens[label] = [links.issue(export, recipient="cfo@bench.test", expires_in=timedelta(days=1),
                                             max_downloads=downloads[label], actor=ACTOR).token]
    finally:
        db.dispose()
        queues.connection().close()
    return tokens


# -- the servers --------------------------------------------------------------------------------


def start_gunicorn(res: Resources, env: dict[str, str], port: int, log: Path) -> list[psutil.Process]:
    """The web server exactly as ``compliance.launcher.run`` starts it (one worker per core by
    default, ``OFFBOARD_WEB_WORKERS``); returns its workers."""
    from compliance import config, launcher

    workers = config.load(env).web_workers
    argv = launcher.web_argv("127.0.0.1", port, workers)
    res.logs.append(log)
    with open(log, "wb") as output:
        master = res.spawn(argv, env=env, stdout=output, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/healthz", master, log)
    started = psutil.Process(master.pid).children()
    if len(started) != workers:
        raise SystemExit(f"expected {workers} gunicorn workers, found {len(started)}")
    return started


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes auto;
{user}pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/zip;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


def start_nginx(res: Resources, prefix: Path, root: Path, port: int, probe: str) -> psutil.Process:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if nginx is None:
        raise SystemExit("nginx is needed for the baseline (apt-get install -y nginx-light)")
    prefix.mkdir(parents=True)
    # As root, nginx's workers would drop to "nobody", who may not enter the private temp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, prefix=prefix, root=root, port=port))
    log = prefix / "error.log"
    res.logs.append(log)
    master = res.spawn([nginx, "-p", str(prefix), "-c", str(conf), "-e", str(log)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/{probe}", master, log, method="HEAD")
    return psutil.Process(master.pid)


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, method: str = "GET") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} did not come up:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within 60 s:\n{log.read_text(errors='replace')[-3000:]}")


# -- measuring ----------------------------------------------------------------------------------

CURL_FORMAT = "%{http_code} %{size_download} %{speed_download} %{time_starttransfer}"


class Pace:
    """Keep the server's rate limit (60 downloads a minute per client) out of the measurement."""

    def __init__(self) -> None:
        self.started: collections.deque[float] = collections.deque()

    def before(self, count: int) -> None:
        while True:
            now = time.monotonic()
            while self.started and self.started[0] < now - 61:
                self.started.popleft()
            if len(self.started) + count <= RATE_LIMIT:
                break
            print(f"waiting for the rate limit window ({len(self.started)} downloads in the last "
                  "minute)", file=sys.stderr)
            time.sleep(self.started[0] + 61.5 - now)
        self.started.extend([time.monotonic()] * count)


def curl_argv(url: str, output: str = "/dev/null") -> list[str]:
    curl = shutil.which("curl")
    if curl is None:
        raise SystemExit("curl is needed (apt-get install -y curl)")
    return [curl, "-s", "-o", output, "-w", CURL_FORMAT, url]


def _check(out: bytes, url: str, size: int) -> tuple[float, float]:
    """curl's report of one GET: its MB/s and seconds to the first byte, if it got every byte."""
    where = re.sub(r"/d/[^/]+/", "/d/<token>/", url)
    try:
        code, got, speed, first_byte = out.decode().split()
    except ValueError:
        raise SystemExit(f"curl {where} failed: {out!r}") from None
    if code != "200" or int(got) != size:
        raise SystemExit(f"GET {where}: HTTP {code}, {got} of {size} bytes"
                         + (" (the rate limit: 60 downloads a minute)" if code == "429" else ""))
    return float(speed) / 1e6, float(first_byte)


@dataclass
class Transfer:
    """One round of downloads: what curl saw and what it cost whom."""

    mb_s: float  # curl's speed_download for one stream; all bytes / wall time for several
    streams: list[float]  # each curl's speed_download
    first_byte_s: float  # the slowest curl's time to the first byte
    wall_s: float
    curl_cpu_s: float  # all curls together (their rusage)
    server_cpu_s: float  # the serving processes (gunicorn's worker, or nginx's workers)
    machine_busy: float  # share of all cores busy with anything, 0..1


def transfer(urls: list[str], size: int, server: list[Any], output: str = "/dev/null") -> Transfer:
    """A curl GET of each of ``urls`` at once, each checked for HTTP 200 and every byte;
    ``server``: the processes (psutil) whose CPU time the transfer costs."""

    def server_cpu() -> float:
        return sum(sum(process.cpu_times()[:2]) for process in server)

    machine, serving, started = psutil.cpu_times(), server_cpu(), time.perf_counter()
    procs = [subprocess.Popen(curl_argv(url, output), stdout=subprocess.PIPE) for url in urls]
    outs, curl_cpu = [], 0.0
    try:
        for proc in procs:
            assert proc.stdout is not None
            outs.append(proc.stdout.read())
            proc.stdout.close()
            _pid, status, usage = os.wait4(proc.pid, 0)  # this curl's own rusage
            proc.returncode = os.waitstatus_to_exitcode(status)
            curl_cpu += usage.ru_utime + usage.ru_stime
    finally:  # interrupted: no curl outlives the run
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
    wall = time.perf_counter() - started
    serving = server_cpu() - serving
    after = psutil.cpu_times()
    idle = (after.idle + after.iowait) - (machine.idle + machine.iowait)
    total = sum(after) - sum(machine)
    checked = [_check(out, url, size) for out, url in zip(outs, urls, strict=True)]
    speeds = [speed for speed, _ in checked]
    mb_s = speeds[0] if len(urls) == 1 else len(urls) * size / wall / 1e6
    return Transfer(mb_s, speeds, max(first for _, first in checked), wall, curl_cpu, serving,
                    1 - idle / total if total else 0.0)


class Sampler:
    """The workers' memory from /proc/<pid>/status every 20 ms: per phase, the peak VmRSS and
    RssAnon of the largest worker (memory must stay flat in each process)."""

    FIELDS = ("VmRSS", "RssAnon", "VmHWM")

    def __init__(self, pids: list[int]) -> None:
        self.pids, self.phase = pids, "start"
        self.peaks: dict[str, dict[str, float]] = {}
        self.running = True
        self.first = self.read()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def read(self) -> dict[str, float]:
        found = dict.fromkeys(self.FIELDS, 0.0)
        for pid in self.pids:
            status = Path(f"/proc/{pid}/status").read_text()
            for field in self.FIELDS:
                match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
                found[field] = max(found[field], int(match.group(1)) / 1024 if match else 0.0)
        return found

    def _run(self) -> None:
        while self.running:
            try:
                now = self.read()
            except OSError:
                return
            peak = self.peaks.setdefault(self.phase, dict.fromkeys(self.FIELDS, 0.0))
            for field in self.FIELDS:
                peak[field] = max(peak[field], now[field])
            time.sleep(0.02)

    def stop(self) -> None:
        self.running = False
        self.thread.join()


# -- profiling ----------------------------------------------------------------------------------


def profile(pid: int, work: Path, action: Any, label: str) -> dict[str, Any]:
    """py-spy on the worker while ``action`` runs; the top functions by own and total samples."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    raw = work / f"profile-{label}.txt"
    spy_proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
                                 "--nonblocking", "--idle", "--output", str(raw)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, process_group=0)
    time.sleep(1.5)  # py-spy attaches
    try:
        action()
    finally:
        spy_proc.send_signal(signal.SIGINT)
        _out, err = spy_proc.communicate(timeout=60)
    if not raw.exists():
        raise SystemExit(f"py-spy wrote no profile: {err.decode(errors='replace')[-2000:]}")
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_short_frame(frame) for frame in stack.split(";")]
        if not any(SERVING.search(frame) for frame in frames):
            continue  # only the threads serving a request, not gunicorn's main loop or idle pool
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    return {"samples": samples, "own": own.most_common(12), "total": total.most_common(25),
            "raw": str(raw)}


SERVING = re.compile(r"^(ThreadWorker\.handle_request|OpenBundle\.chunks|decrypt_range) \(")


def _short_frame(frame: str) -> str:
    """``func (/long/path/pkg/mod.py:12)`` -> ``func (pkg/mod.py:12)``."""
    return re.sub(r"\((?:[^()]*/)?([^/()]+/[^/()]+:\d+)\)", r"(\1)", frame)


def print_profile(label: str, result: dict[str, Any]) -> None:
    samples = max(1, result["samples"])
    print(f"\npy-spy, {label}: {result['samples']} samples of the download threads (raw: {result['raw']})")
    print(f"  {'own %':>6}  function")
    for frame, count in result["own"]:
        print(f"  {100 * count / samples:>6.1f}  {frame}")
    print(f"  {'total %':>6}  function")
    for frame, count in result["total"]:
        print(f"  {100 * count / samples:>6.1f}  {frame}")


# -- the run ------------------------------------------------------------------------------------


class LinkPool:
    """The download URLs of one bundle, each used for at most ``quota`` whole downloads."""

    def __init__(self, urls: list[str], quota: int) -> None:
        self.urls, self.quota, self.used = urls, quota, 0

    def take(self, count: int = 1) -> list[str]:
        taken = []
        for _ in range(count):
            if self.used // self.quota >= len(self.urls):
                raise RuntimeError("more downloads than the links were issued for")
            taken.append(self.urls[self.used // self.quota])
            self.used += 1
        return taken


@dataclass
class Setup:
    work: Path
    bundles: dict[str, tuple[Path, str]]  # label -> (plaintext file, its sha256)
    serve: dict[str, LinkPool]
    nginx_urls: dict[str, str]
    workers: list[psutil.Process]  # gunicorn's workers
    nginx_workers: list[psutil.Process]


def prepare(args: argparse.Namespace, res: Resources) -> Setup:
    """The private database, instance dir and bundles; then gunicorn and nginx, both serving."""
    url = os.environ.get("TEST_DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = private_redis_db(os.environ.get("TEST_REDIS_URL") or DEFAULT_REDIS_URL, args.redis_db)
    res.redis_url = redis_url
    work = res.work = Path(tempfile.mkdtemp(prefix="offboard-bench-download-"))
    www, instance = work / "www", work / "instance"
    www.mkdir()
    instance.mkdir()
    if args.sqlite:
        database_url = f"sqlite:///{instance / 'app.db'}"
    else:
        database = f"offboard_bench_download_{uuid.uuid4().hex[:8]}"
        res.admin_url = url
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                res.database = database
                conn.execute(text(f'CREATE DATABASE "{database}"'))
        finally:
            admin.dispose()
        database_url = make_url(url).set(database=database).render_as_string(hide_password=False)

    bundles: dict[str, tuple[Path, str]] = {}
    for label, size_mb in (("small", args.small_mb), ("big", args.size_mb)):
        started = time.perf_counter()
        plain = www / f"bundle-{size_mb}.zip"
        bundles[label] = (plain, make_plain(plain, size_mb, SEED + size_mb))
        print(f"wrote {plain.name} ({size_mb} MiB) in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    # Only what the service reads: a shell's own OFFBOARD_* settings must not leak into the run.
    env = {key: value for key, value in os.environ.items()
           if (not key.startswith("OFFBOARD_") or key == "OFFBOARD_WEB_WORKERS")
           and key not in ("DATABASE_URL", "REDIS_URL", "PORT", "GUNICORN_CMD_ARGS")}
    os.environ.pop("OFFBOARD_MASTER_KEY", None)  # keys.py reads it directly: use the private keys dir
    app_port, nginx_port = free_port(), free_port()
    env.update(OFFBOARD_INSTANCE_DIR=str(instance), DATABASE_URL=database_url, REDIS_URL=redis_url,
               PORT=str(app_port), LOG_LEVEL="INFO")
    started = time.perf_counter()
    planned = {"small": 1 + args.repeat + args.concurrency,
               "big": 1 + args.repeat * (1 + args.concurrency)
               + (PROFILE_SINGLE + args.concurrency if args.profile else 0)}
    tokens = setup_app(env, bundles, planned)
    print(f"sealed both bundles and issued links in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)

    env.update(OFFBOARD_ENV="production", OFFBOARD_SECRET_KEY=secrets.token_urlsafe(48))
    workers = start_gunicorn(res, env, app_port, work / "gunicorn.log")
    nginx = start_nginx(res, work / "nginx", www, nginx_port, bundles["small"][0].name)
    serve = {label: LinkPool([f"http://127.0.0.1:{app_port}/d/{token}/bundle.zip" for token in found],
                             planned[label])
             for label, found in tokens.items()}
    files = {label: f"http://127.0.0.1:{nginx_port}/{plain.name}" for label, (plain, _) in bundles.items()}
    return Setup(work, bundles, serve, files, workers, [nginx, *nginx.children()])


def measure(args: argparse.Namespace, setup: Setup) -> dict[str, Any]:
    """The small bundle first (so the worker's high-water mark then belongs to it), then the big one."""
    worker, serve_small, serve_big = setup.workers, setup.serve["small"], setup.serve["big"]
    n = args.concurrency
    sampler, pace = Sampler([process.pid for process in setup.workers]), Pace()
    results: dict[str, Any] = {"rss_start": sampler.first, "web_workers": len(setup.workers)}
    try:
        size = args.small_mb * MIB
        sampler.phase = "small"
        pace.before(1)
        check = setup.work / "check.zip"
        small_first = transfer(serve_small.take(), size, worker, output=str(check))  # also warms the worker
        if hashlib.sha256(check.read_bytes()).hexdigest() != setup.bundles["small"][1]:
            raise SystemExit("the served bundle differs from the plaintext")
        check.unlink()
        small: list[Transfer] = []
        for _ in range(args.repeat):
            pace.before(1)
            small.append(transfer(serve_small.take(), size, worker))
        pace.before(n)
        small_concurrent = transfer(serve_small.take(n), size, worker)
        time.sleep(0.1)
        results["small"] = {"first": small_first, "single": small, "concurrent": small_concurrent,
                            "memory": dict(sampler.peaks["small"], VmHWM=sampler.read()["VmHWM"])}

        size = args.size_mb * MIB
        sampler.phase = "big"
        results["big"] = _measure_big(args, setup, pace)
        time.sleep(0.1)
        results["big"]["memory"] = dict(sampler.peaks["big"], VmHWM=sampler.read()["VmHWM"])

        if args.profile:
            pace.before(PROFILE_SINGLE)
            results["profile_single"] = profile(
                setup.workers[0].pid, setup.work,
                lambda: [transfer(serve_big.take(), size, worker) for _ in range(PROFILE_SINGLE)], "single")
            pace.before(n)
            results["profile_concurrent"] = profile(
                setup.workers[0].pid, setup.work, lambda: transfer(serve_big.take(n), size, worker),
                "concurrent")
            if args.keep_profiles:
                keep = Path(args.keep_profiles)
                keep.mkdir(parents=True, exist_ok=True)
                for name in ("single", "concurrent"):
                    shutil.copy(setup.work / f"profile-{name}.txt", keep / f"download-profile-{name}.txt")
    finally:
        sampler.stop()
    return results


def _measure_big(args: argparse.Namespace, setup: Setup, pace: Pace) -> dict[str, Any]:
    """The object's first download apart (the server may check a new object once, and cache
    that), then rounds of one stream and ``--concurrency`` streams from nginx and from Offboard,
    interleaved so both servers and both loads see the same noise."""
    size, n = args.size_mb * MIB, args.concurrency
    worker, nginx = setup.workers, setup.nginx_workers
    serve, nginx_url = setup.serve["big"], setup.nginx_urls["big"]
    transfer([nginx_url], size, nginx)  # nginx's first read of the file
    pace.before(1)
    runs: dict[str, Any] = {"first": transfer(serve.take(), size, worker), "nginx_single": [], "single": [],
                            "nginx_concurrent": [], "concurrent": []}
    for _ in range(args.repeat):
        runs["nginx_single"].append(transfer([nginx_url], size, nginx))
        pace.before(1)
        runs["single"].append(transfer(serve.take(), size, worker))
        runs["nginx_concurrent"].append(transfer([nginx_url] * n, size, nginx))
        pace.before(n)
        runs["concurrent"].append(transfer(serve.take(n), size, worker))
    return runs


def _median_run(runs: list[Transfer]) -> Transfer:
    """The run with the median speed (the lower middle one for an even count)."""
    return sorted(runs, key=lambda run: run.mb_s)[(len(runs) - 1) // 2]


def report(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    big, small = results["big"], results["small"]
    serve_run, nginx_run = _median_run(big["single"]), _median_run(big["nginx_single"])
    serve, nginx = statistics.median(r.mb_s for r in big["single"]), statistics.median(
        r.mb_s for r in big["nginx_single"])
    concurrent_run = _median_run(big["concurrent"])
    concurrent = statistics.median(r.mb_s for r in big["concurrent"])
    nginx_concurrent = statistics.median(r.mb_s for r in big["nginx_concurrent"])
    ratio, concurrent_ratio = serve / nginx, concurrent / serve
    cores = psutil.cpu_count() or 1
    n = args.concurrency

    def line(name: str, run: Transfer, mb_s: float, target: str = "", runs: list[Transfer] | None = None
             ) -> None:
        shown = " ".join(f"{r.mb_s:.0f}" for r in runs) if runs else ""
        print(f"{name:<38}{mb_s:>7.0f}{mb_s / nginx:>8.2f}{target:>9}"
              f"{100 * run.server_cpu_s / run.wall_s:>9.0f}{100 * run.curl_cpu_s / run.wall_s:>7.0f}"
              f"{100 * run.machine_busy:>7.0f}   {shown}")

    print(f"\n{f'download, {args.size_mb} MiB':<38}{'MB/s':>7}{'x nginx':>8}{'target':>9}"
          f"{'server':>9}{'curl':>7}{'busy':>7}   runs, MB/s")
    print(f"{'':<62}{'% of a core':>16}{f'% of {cores}':>7}")
    line("nginx, sendfile, 1 stream", nginx_run, nginx, runs=big["nginx_single"])
    line("Offboard, 1 stream", serve_run, serve, ">= 300", big["single"])
    line("Offboard, the object's first download", big["first"], big["first"].mb_s)
    line(f"nginx, {n} streams, aggregate", _median_run(big["nginx_concurrent"]), nginx_concurrent,
         runs=big["nginx_concurrent"])
    line(f"Offboard, {n} streams, aggregate", concurrent_run, concurrent, f"{concurrent_ratio:.2f}x1",
         big["concurrent"])
    print(f"{'':<38}per stream {' '.join(f'{v:.0f}' for v in concurrent_run.streams)}")
    small_single = statistics.median(r.mb_s for r in small["single"])
    line(f"Offboard, {args.small_mb} MiB, 1 stream", _median_run(small["single"]), small_single,
         runs=small["single"])
    line(f"Offboard, {args.small_mb} MiB, {n} streams", small["concurrent"], small["concurrent"].mb_s)
    line(f"Offboard, {args.small_mb} MiB, first download", small["first"], small["first"].mb_s)
    print(f"time to the first byte: Offboard {serve_run.first_byte_s * 1000:.0f} ms, nginx "
          f"{nginx_run.first_byte_s * 1000:.1f} ms; the object's first download "
          f"{big['first'].first_byte_s * 1000:.0f} ms ({args.size_mb} MiB), "
          f"{small['first'].first_byte_s * 1000:.0f} ms ({args.small_mb} MiB)")
    print("(x nginx: against nginx's single stream; target of the concurrent line: x Offboard's "
          "single stream, >= 1.5)")
    print(f"bound on {n} streams / 1 stream with the curls on these cores (cores / cores busy during one "
          f"stream): Offboard {1 / serve_run.machine_busy:.2f}, nginx {1 / nginx_run.machine_busy:.2f}")

    start = results["rss_start"]
    print(f"\n{'gunicorn worker memory, MiB':<32}{'peak RSS':>10}{'peak anon':>11}{'VmHWM':>8}")
    print(f"{'at start (before any request)':<32}{start['VmRSS']:>10.0f}{start['RssAnon']:>11.0f}"
          f"{start['VmHWM']:>8.0f}")
    for phase, size_mb in ((small, args.small_mb), (big, args.size_mb)):
        memory = phase["memory"]
        print(f"{f'during the {size_mb} MiB downloads':<32}{memory['VmRSS']:>10.0f}"
              f"{memory['RssAnon']:>11.0f}{memory['VmHWM']:>8.0f}")

    peak = max(big["memory"]["VmHWM"], big["memory"]["VmRSS"])
    peak_small = max(small["memory"]["VmHWM"], small["memory"]["VmRSS"])
    gigabytes = len(big["single"]) * args.size_mb * MIB / 1e9

    def pct(value: float) -> float:
        return round(100 * value, 1)

    summary: dict[str, Any] = {
        "size_mb": args.size_mb, "small_mb": args.small_mb, "repeat": args.repeat,
        "concurrency": n, "cores": cores, "web_workers": results["web_workers"],
        "database": "sqlite" if args.sqlite else "postgresql",
        "code": code_version(),
        "serve_mb_s": round(serve, 1), "serve_runs": [round(r.mb_s, 1) for r in big["single"]],
        "nginx_mb_s": round(nginx, 1), "nginx_runs": [round(r.mb_s, 1) for r in big["nginx_single"]],
        "ratio": round(ratio, 3),
        "concurrent_mb_s": round(concurrent, 1),
        "concurrent_runs": [round(r.mb_s, 1) for r in big["concurrent"]],
        "concurrent_ratio": round(concurrent_ratio, 3),
        "concurrent_streams_mb_s": [round(v, 1) for v in concurrent_run.streams],
        "nginx_concurrent_mb_s": round(nginx_concurrent, 1),
        "nginx_concurrent_runs": [round(r.mb_s, 1) for r in big["nginx_concurrent"]],
        "nginx_concurrent_ratio": round(nginx_concurrent / nginx, 3),
        "first_download_mb_s": round(big["first"].mb_s, 1),
        "first_byte_ms": round(serve_run.first_byte_s * 1000, 1),
        "first_download_first_byte_ms": round(big["first"].first_byte_s * 1000, 1),
        "nginx_first_byte_ms": round(nginx_run.first_byte_s * 1000, 2),
        "serve_small_mb_s": round(small_single, 1),
        "concurrent_small_mb_s": round(small["concurrent"].mb_s, 1),
        "worker_cpu_s_per_gb": round(sum(r.server_cpu_s for r in big["single"]) / gigabytes, 3),
        "worker_cpu_pct_single": pct(serve_run.server_cpu_s / serve_run.wall_s),
        "worker_cpu_pct_concurrent": pct(concurrent_run.server_cpu_s / concurrent_run.wall_s),
        "curl_cpu_pct_single": pct(serve_run.curl_cpu_s / serve_run.wall_s),
        "machine_busy_pct_single": pct(serve_run.machine_busy),
        "machine_busy_pct_concurrent": pct(concurrent_run.machine_busy),
        "nginx_machine_busy_pct_single": pct(nginx_run.machine_busy),
        "concurrent_ratio_bound": round(1 / serve_run.machine_busy, 2),
        "nginx_concurrent_ratio_bound": round(1 / nginx_run.machine_busy, 2),
        "rss_start_mb": round(start["VmRSS"], 1),
        "peak_rss_mb": round(peak, 1), "peak_rss_mb_small": round(peak_small, 1),
        "peak_anon_mb": round(big["memory"]["RssAnon"], 1),
        "peak_anon_mb_small": round(small["memory"]["RssAnon"], 1),
    }
    met = {"serve_met": serve >= TARGET_MB_S, "ratio_met": ratio >= TARGET_RATIO,
           "concurrent_met": concurrent_ratio >= TARGET_CONCURRENT,
           "rss_flat": peak <= peak_small * (1 + RSS_FLAT)}
    summary.update(met)
    print("\ntargets: " + ", ".join(f"{key.removesuffix('_met')} {'met' if ok else 'MISSED'}"
                                    for key, ok in met.items()))
    for key, label in (("profile_single", "one stream"), ("profile_concurrent", f"{n} streams")):
        if key in results:
            print_profile(label, results[key])
    return summary


def code_version() -> str:
    """The commit measured, "+changes" when the application's files differ from it."""
    root, git = Path(__file__).resolve().parent.parent, shutil.which("git")
    if git is None:
        return "unknown"
    try:
        commit = subprocess.run([git, "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                                capture_output=True, text=True).stdout.strip()
        changed = subprocess.run([git, "status", "--porcelain", "--", "compliance", "exporters", "audit",
                                  "migrations"], cwd=root, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if changed.strip() else "")


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="the bundle's size in MiB")
    parser.add_argument("--small-mb", type=int, default=64,
                        help="the second bundle, which shows memory is flat")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of single and concurrent runs (the median counts)")
    parser.add_argument("--concurrency", type=int, default=8, help="curls at once")
    parser.add_argument("--sqlite", action="store_true",
                        help="a SQLite file in the private instance dir instead of a PostgreSQL database")
    parser.add_argument("--redis-db", type=int, metavar="N",
                        help="the Redis database for the server (default: the first empty one from 15 "
                             "down); it is emptied at the end")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the worker during one more single and concurrent round")
    parser.add_argument("--keep-profiles", metavar="DIR", help="copy py-spy's raw stacks there")
    args = parser.parse_args()
    if args.concurrency + 1 > RATE_LIMIT:
        parser.error(f"--concurrency must stay below the server's rate limit ({RATE_LIMIT})")
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: a background job
        signal.signal(signum, _interrupted)                       # starts with it ignored
    res = Resources()
    try:
        results = measure(args, prepare(args, res))
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        raise SystemExit(130) from None
    except BaseException:
        for log in res.logs:
            if log.exists():
                tail = log.read_text(errors="replace")[-4000:]
                print(f"--- the end of {log.name}:\n{tail}", file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        res.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    summary = report(args, results)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
