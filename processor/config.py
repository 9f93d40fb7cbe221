"""One Settings object, read from a TOML file and overridable from the environment.

Environment variables use the prefix ``BOUNCE_`` and ``__`` between nested names, for example
``BOUNCE_DATABASE__URL=postgresql+psycopg://...`` or ``BOUNCE_POLICY__SOFT_THRESHOLD=5``.
Secrets are ``SecretStr`` so that they never print; they may also come from a file (``*_file``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
DEFAULT_RULES_DIR = PROJECT_DIR / "rules"
DEFAULT_SAMPLES_DIR = PROJECT_DIR / "samples"
CONFIG_ENV = "BOUNCE_PROCESSOR_CONFIG"


class ConfigError(Exception):
    """The configuration is invalid; the message says which value and why."""


class DatabaseSettings(BaseModel):
    url: str = "sqlite:///bounce-processor.db"
    """SQLAlchemy URL: sqlite:///path.db (default) or postgresql+psycopg://user@host/db."""
    lowercase_local_part: bool = True
    """Lower-case the local part of addresses (the domain is always lower-cased)."""


class ParseSettings(BaseModel):
    max_message_bytes: int = 10 * 1024 * 1024
    """Only this many bytes of a message are parsed; reports come first, so this loses nothing."""
    correlation_headers: list[str] = Field(
        default_factory=lambda: ["X-Campaign-ID", "X-Mailer-RecptId", "X-Message-Tag"]
    )
    """Headers of the original message that are copied into events (for example a campaign id)."""
    verp_prefixes: list[str] = Field(default_factory=lambda: ["bounces", "bounce", "return"])
    """Local-part prefixes of VERP return paths such as bounces+alice=example.org@sender.example."""


class RulesSettings(BaseModel):
    dirs: list[Path] = Field(default_factory=list)
    """Operator rule directories, consulted before the default rules."""
    include_defaults: bool = True


class PolicySettings(BaseModel):
    hard_ttl_days: int | None = None
    """None: hard bounces suppress permanently."""
    soft_threshold: int = 3
    soft_window_days: int = 7
    soft_ttl_days: int = 14
    complaint_ttl_days: int | None = None
    allow_window_days: int = 0
    """After a manual removal, ignore bounces for this many days (0: only older events are ignored)."""


class Settings(BaseSettings):
    """Everything the service needs; one instance per process, built by ``load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix="BOUNCE_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )
    toml_path: ClassVar[Path | None] = None

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    parse: ParseSettings = Field(default_factory=ParseSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    verp_secret: SecretStr | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path))
        return tuple(sources)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (argument, else $BOUNCE_PROCESSOR_CONFIG, else none) and the environment."""
    from pydantic import ValidationError

    chosen = path if path is not None else os.environ.get(CONFIG_ENV)
    toml_path = Path(chosen) if chosen else None
    if toml_path is not None and not toml_path.is_file():
        raise ConfigError(f"configuration file not found: {toml_path}")

    class _FileSettings(Settings):
        pass

    _FileSettings.toml_path = toml_path
    try:
        loaded = _FileSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration{f' in {toml_path}' if toml_path else ''}: {problems}") from None
    except ValueError as exc:  # TOML syntax errors
        raise ConfigError(f"cannot read {toml_path}: {exc}") from None
    return loaded
