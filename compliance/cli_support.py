"""What every ``offboard`` command shares: the actor it audits as, one-line errors, the database."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps
from typing import Any

import click
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from compliance import config, db

CLI_ACTOR = "cli:" + os.environ.get("USER", "operator")


def one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (config.ConfigError, ValueError, LookupError) as error:
            raise click.ClickException(str(error)) from error
        except SQLAlchemyError as error:
            raise click.ClickException(f"database error: {error.__class__.__name__}: "
                                       f"{str(error).splitlines()[0]}") from error
        except RedisError as error:
            raise click.ClickException(f"redis error: {error}") from error

    return wrapper


def database() -> config.Settings:
    settings = config.load()
    db.configure(settings.database_url)
    return settings
