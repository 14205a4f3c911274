"""Settings: embedded defaults, and production refusing to start without a real secret."""

from __future__ import annotations

import os
import stat

import pytest

from compliance import config, launcher


def test_defaults_live_under_the_instance_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = config.load({"OFFBOARD_INSTANCE_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'offboard.db'}"
    assert settings.redis_url is None
    assert settings.embedded_redis_path == tmp_path / "redis.db"
    assert settings.storage == str(tmp_path / "bundles")
    assert settings.keys_dir == tmp_path / "keys"


def test_development_secret_is_generated_once_and_private(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = config.load({"OFFBOARD_INSTANCE_DIR": str(tmp_path)})
    second = config.load({"OFFBOARD_INSTANCE_DIR": str(tmp_path)})
    assert first.secret_key == second.secret_key and len(first.secret_key) >= 48
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys" / "secret_key").stat().st_mode) == 0o600


@pytest.mark.parametrize("secret", [None, "", "changeme", "dev", "short-but-not-default"])
def test_production_refuses_missing_default_or_weak_secret(tmp_path, secret) -> None:  # type: ignore[no-untyped-def]
    env = {"OFFBOARD_ENV": "production", "OFFBOARD_INSTANCE_DIR": str(tmp_path)}
    if secret is not None:
        env["OFFBOARD_SECRET_KEY"] = secret
    with pytest.raises(config.ConfigError, match="OFFBOARD_SECRET_KEY"):
        config.load(env)


def test_production_accepts_a_real_secret(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = "x" * 40
    settings = config.load({"OFFBOARD_ENV": "production", "OFFBOARD_SECRET_KEY": secret,
                            "OFFBOARD_INSTANCE_DIR": str(tmp_path)})
    assert settings.secret_key == secret
    assert not (tmp_path / "keys" / "secret_key").exists()


@pytest.mark.parametrize(("name", "value"), [("OFFBOARD_ENV", "staging"),
                                             ("OFFBOARD_MAX_REQUEST_BYTES", "-1"),
                                             ("OFFBOARD_WEB_WORKERS", "0")])
def test_bad_values_are_named(tmp_path, name, value) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(config.ConfigError, match=name):
        config.load({"OFFBOARD_INSTANCE_DIR": str(tmp_path), name: value})


def test_smtp_url_gives_host_port_security_and_credentials(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def smtp(url: str) -> config.Smtp | None:
        return config.load({"OFFBOARD_INSTANCE_DIR": str(tmp_path), "SMTP_URL": url}).smtp

    assert config.load({"OFFBOARD_INSTANCE_DIR": str(tmp_path)}).smtp is None  # development: .eml files
    with_tls = smtp("smtp://mailer%40acme:p%3Ass@mail.acme.example:587?starttls=true&timeout=12")
    assert with_tls == config.Smtp(host="mail.acme.example", port=587, security="starttls",
                                   username="mailer@acme", password="p:ss", timeout=12.0)
    assert "p:ss" not in repr(with_tls) and "p%3Ass" not in repr(with_tls)
    assert smtp("smtps://mail.acme.example") == config.Smtp("mail.acme.example", 465, "ssl", None, None, 30.0)
    assert smtp("smtp://127.0.0.1:2525") == config.Smtp("127.0.0.1", 2525, "none", None, None, 30.0)


@pytest.mark.parametrize("url", ["http://mailer:hunter22@mail.example", "smtp://mailer:hunter22@mail.example:99999",
                                 "smtp://mailer:hunter22@:587", "smtp://mailer:hunter22@mail.example?starttls=yes",
                                 "smtps://mailer:hunter22@mail.example?starttls=true",
                                 "smtp://mailer:hunter22@mail.example?timeout=0",
                                 "smtp://mailer:hunter22@mail.example?tls=1"])
def test_a_bad_smtp_url_is_named_without_its_password(tmp_path, url) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(config.ConfigError, match="SMTP_URL") as refused:
        config.load({"OFFBOARD_INSTANCE_DIR": str(tmp_path), "SMTP_URL": url})
    assert "hunter22" not in str(refused.value)


def test_mail_from_is_one_address(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"OFFBOARD_INSTANCE_DIR": str(tmp_path)}
    assert config.load(env).mail_from == "Offboard <no-reply@offboard.invalid>"
    assert config.load({**env, "OFFBOARD_MAIL_FROM": "Acme <exit@acme.example>"}).mail_from == \
        "Acme <exit@acme.example>"
    for bad in ("not an address", "a@acme.example\r\nBcc: all@acme.example"):
        with pytest.raises(config.ConfigError, match="OFFBOARD_MAIL_FROM"):
            config.load({**env, "OFFBOARD_MAIL_FROM": bad})


def test_one_web_worker_per_core_unless_told(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cores = len(os.sched_getaffinity(0))
    default = config.load({"OFFBOARD_INSTANCE_DIR": str(tmp_path)}).web_workers
    assert default == max(1, min(cores, config.MAX_DEFAULT_WEB_WORKERS))
    told = config.load({"OFFBOARD_INSTANCE_DIR": str(tmp_path), "OFFBOARD_WEB_WORKERS": "3"}).web_workers
    argv = launcher.web_argv("127.0.0.1", 8000, told)
    assert argv[argv.index("--workers") + 1] == "3" and argv[-1] == "compliance.app:create_app()"
