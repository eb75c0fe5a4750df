"""Typed readers for settings taken from the environment.

Every helper fails loudly (ImproperlyConfigured) on a value it cannot read, so that a typo in a
deployment is an error at start-up rather than a silently ignored setting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_VALUES = {"1", "true", "yes", "on"}
FALSE_VALUES = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    """The raw value, or the default when the variable is unset."""
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in TRUE_VALUES:
        return True
    if lowered in FALSE_VALUES:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be <= {maximum}, got {number}")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = float(value.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {number}")
    return number


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_database_url(url: str, *, base_dir: Path) -> dict[str, Any]:
    """Turn `sqlite:///path` or `postgres://user:pass@host:port/name` into a DATABASES entry."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        # sqlite:///relative/path, sqlite:////absolute/path, sqlite://:memory:
        raw = unquote(parts.path)
        if parts.netloc == ":memory:" or raw in ("", "/:memory:"):
            name: str = ":memory:"
        else:
            # sqlite:///relative.db has path "/relative.db"; sqlite:////abs.db has "//abs.db".
            path = Path(raw[1:])
            if not path.is_absolute():
                path = base_dir / path
            name = str(path)
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    if scheme in ("postgres", "postgresql", "pgsql"):
        if not parts.path.strip("/"):
            raise ImproperlyConfigured(f"DATABASE_URL names no database: {url!r}")
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        config: dict[str, Any] = {
            # Django's PostgreSQL backend with a health check that costs no round trip while
            # the connection is quiet (keychest/db/postgresql/base.py).
            "ENGINE": "keychest.db.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": int(options.pop("conn_max_age", "60")),
            "CONN_HEALTH_CHECKS": True,
        }
        # KeyChest's queries are short index look-ups; PostgreSQL's JIT, triggered by an over-
        # estimated row count, once spent 20 ms compiling a 0.2 ms look-up. Off unless the URL
        # passes its own `options`.
        options.setdefault("options", "-c jit=off")
        config["OPTIONS"] = options
        return config
    raise ImproperlyConfigured(f"DATABASE_URL must start with sqlite:// or postgres://, got {url!r}")


@dataclass(frozen=True)
class EmailConfig:
    """Email backend settings parsed from EMAIL_URL."""

    backend: str
    host: str = "localhost"
    port: int = 25
    user: str = ""
    password: str = ""
    use_tls: bool = False
    use_ssl: bool = False
    file_path: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def parse_email_url(url: str) -> EmailConfig:
    """`smtp://user:pass@host:port`, `smtp+tls://…` (STARTTLS), `smtps://…` (implicit TLS),
    `console://`, `file:///dir`, `locmem://`."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "console":
        return EmailConfig(backend="django.core.mail.backends.console.EmailBackend")
    if scheme == "locmem":
        return EmailConfig(backend="django.core.mail.backends.locmem.EmailBackend")
    if scheme == "file":
        path = unquote(parts.path)
        if not path:
            raise ImproperlyConfigured("EMAIL_URL file:// needs a folder, e.g. file:///var/mail")
        return EmailConfig(backend="django.core.mail.backends.filebased.EmailBackend", file_path=path)
    if scheme in ("smtp", "smtp+tls", "smtps", "smtp+ssl"):
        use_ssl = scheme in ("smtps", "smtp+ssl")
        try:
            port = parts.port or (465 if use_ssl else 587 if scheme == "smtp+tls" else 25)
        except ValueError:
            raise ImproperlyConfigured(f"EMAIL_URL has an invalid port: {url!r}") from None
        return EmailConfig(
            backend="django.core.mail.backends.smtp.EmailBackend",
            host=parts.hostname or "localhost",
            port=port,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            use_tls=scheme == "smtp+tls",
            use_ssl=use_ssl,
        )
    raise ImproperlyConfigured(
        f"EMAIL_URL must be smtp://, smtp+tls://, smtps://, console://, file:// or locmem://, got {url!r}"
    )
