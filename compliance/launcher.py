"""``offboard run``: the whole service in the foreground, children stopped cleanly on Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from types import FrameType

import click

from compliance import config, db, queues, schema, seed
from compliance.config import Settings

STOP_TIMEOUT = 15.0


def web_argv(host: str, port: int, workers: int) -> list[str]:
    """The production web server: gunicorn, ``workers`` processes of 8 threads each (the
    download benchmark starts exactly this)."""
    return [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", str(workers),
            "--threads", "8", "--graceful-timeout", "10", "--no-control-socket",
            "compliance.app:create_app()"]


def web_env(env: dict[str, str], settings: Settings) -> dict[str, str]:
    """With several web workers, /metrics must add up every worker's counters: prometheus_client's
    multiprocess mode, in a directory emptied at each start (unless one is configured)."""
    if settings.web_workers == 1 or env.get("PROMETHEUS_MULTIPROC_DIR"):
        return env
    folder = settings.instance_dir / "prometheus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700)
    return {**env, "PROMETHEUS_MULTIPROC_DIR": str(folder)}


def run(host: str, port: int) -> int:
    """Migrate, seed, then supervise web + worker + cron until a signal or a child's death."""
    settings = config.load()
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    db.configure(settings.database_url)
    schema.upgrade(settings.database_url)
    seed.seed_demo_tenant(settings)
    admin_key = seed.bootstrap_admin_key()
    first_user = seed.bootstrap_admin_user()
    db.dispose()

    env = dict(os.environ, OFFBOARD_INSTANCE_DIR=str(settings.instance_dir), PORT=str(port))
    if settings.redis_url is None:
        # One embedded Redis for every child, shared through its unix socket.
        env["REDIS_URL"] = "unix://" + queues.start_embedded(settings.embedded_redis_path)
    children = {
        "web": web_argv(host, port, settings.web_workers),
        "worker": [sys.executable, "-m", "compliance.cli", "worker"],
        "cron": [sys.executable, "-m", "compliance.cli", "cron"],
    }
    envs = {"web": web_env(env, settings)}
    # Own process groups: Ctrl-C reaches only this supervisor, which stops each child once.
    processes = {name: subprocess.Popen(argv, env=envs.get(name, env), process_group=0)
                 for name, argv in children.items()}
    _announce(settings, host, port, admin_key, first_user)
    stopping: list[int] = []

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    exit_code = 0
    while not stopping:
        dead = [name for name, process in processes.items() if process.poll() is not None]
        if dead:
            click.echo(f"offboard: {', '.join(dead)} stopped unexpectedly; stopping the rest",
                       err=True)
            exit_code = 1
            break
        time.sleep(0.2)
    _stop_all(processes)
    return exit_code


def _stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _announce(settings: Settings, host: str, port: int, admin_key: str | None,
              first_user: tuple[str, str] | None) -> None:
    base = f"http://{'localhost' if host in ('0.0.0.0', '127.0.0.1') else host}:{port}"  # noqa: S104
    lines = [
        "Offboard is running (Ctrl-C stops it).",
        f"  Admin pages:  {base}/admin/",
        f"  API:          {base}/api/v1",
        f"  API docs:     {base}/api/docs",
        f"  Health:       {base}/healthz",
        f"  Metrics:      {base}/metrics",
        f"  Database:     {settings.database_url.split('@')[-1]}",
        f"  Instance dir: {settings.instance_dir}",
    ]
    if admin_key:
        lines += ["", "Bootstrap admin API key (shown once, stored hashed):", f"  {admin_key}"]
    else:
        lines += ["", "An admin API key exists already; make another with "
                      "`offboard keys create --role admin --name NAME`."]
    if first_user:
        lines += ["", "Bootstrap admin for the admin pages (password shown once, stored as argon2):",
                  f"  email: {first_user[0]}", f"  password: {first_user[1]}",
                  "  Add people with `offboard users create --email ... --name ... --role csm`."]
    click.echo("\n".join(lines), err=False)
    sys.stdout.flush()
