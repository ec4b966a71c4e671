"""Settings, read from the environment and `.env` (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Every setting of the service; see `.env.example` for the documented defaults."""

    model_config = SettingsConfigDict(env_prefix="SVC_", env_file=".env", extra="ignore", populate_by_name=True)

    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL"),
        description="PostgreSQL URL; unset = embedded PostgreSQL under the data directory",
    )
    data_dir: Path = Field(default=Path(".svc"), validation_alias=AliasChoices("SVC_DATA_DIR"))
    git_repository: Path | None = Field(
        default=None, description="bare git repository for claude.md; default <data_dir>/content.git"
    )
    git_remote: SecretStr | None = Field(
        default=None,
        description="git URL every save is pushed to, shared by all hosts (credentials in it are never shown)",
    )
    git_remote_timeout: float = Field(default=10.0, gt=0, description="seconds one push or fetch may take")

    pool_min_size: int = Field(default=2, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    pool_timeout: float = Field(default=5.0, gt=0, description="seconds to wait for a free connection")
    read_pool_size: int = Field(
        default=8, ge=1, description="connections per worker for single-statement reads on the event loop"
    )
    connect_timeout: int = Field(default=5, ge=1, description="seconds to wait for PostgreSQL to answer a connect")
    statement_timeout_ms: int = Field(default=30_000, ge=0)
    threads: int = Field(default=4, ge=1, description="threads per worker running blocking database work")

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1)

    secret_keys: SecretStr | None = Field(
        default=None,
        description="key ring for secret values: comma-separated id:base64key (32 bytes each); the first "
        "encrypts, all decrypt. Unset = embedded: a key file under the data directory; DATABASE_URL: no secrets",
    )
    key_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("SVC_SECRET_KEY_FILE"),
        description="a key file (the key ring's text, one id:base64key a line) to use when SVC_SECRET_KEYS is unset; "
        "default on the embedded default <data_dir>/secret-keys. Read again when it changes",
    )

    max_config_bytes: int = Field(default=MIB, ge=1)
    max_document_bytes: int = Field(default=MIB, ge=1)
    max_request_bytes: int = Field(default=3 * MIB, ge=1024, description="hard cap on any request body")

    cache_max_bytes: int = Field(default=64 * MIB, ge=0, description="resolve cache size per worker")
    event_retention_hours: int = Field(default=168, ge=1, description="how long the change stream can replay")
    long_poll_max_seconds: int = Field(default=300, ge=1, le=3600)
    sse_keepalive_seconds: float = Field(default=15.0, gt=0)
    metrics: Literal["off", "token", "public"] = Field(
        default="token", description="/metrics: off, admin token required, or public"
    )

    github_api_url: str = Field(
        default="https://api.github.com",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="GitHub's REST API, for listing and importing repositories (GitHub Enterprise Server: "
        "https://<host>/api/v3)",
    )
    github_timeout: float = Field(default=10.0, gt=0, description="seconds one request to GitHub may take")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = Field(default=False, description="one log line per request")

    migrate_lock_wait: float = Field(default=60.0, gt=0, description="seconds a runner waits for another runner")
    migrate_lock_timeout_ms: int = Field(default=10_000, ge=0)
    migrate_statement_timeout_ms: int = Field(default=600_000, ge=0)

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def pgdata(self) -> Path:
        return self.data_dir.resolve() / "postgres"

    @property
    def secret_key_file(self) -> Path:
        """The key file: SVC_SECRET_KEY_FILE, or where the embedded default keeps its generated key."""
        return (self.key_file or self.data_dir / "secret-keys").resolve()

    @property
    def uses_key_file(self) -> bool:
        """True when the key ring comes from a key file (SVC_SECRET_KEYS unset: embedded, or SVC_SECRET_KEY_FILE)."""
        configured = self.secret_keys.get_secret_value().strip() if self.secret_keys else ""
        return not configured and (self.embedded or self.key_file is not None)

    @property
    def git_path(self) -> Path:
        return (self.git_repository or self.data_dir / "content.git").resolve()

    @property
    def marketplaces_path(self) -> Path:
        """The served copies of the Claude Code marketplaces (made again when missing)."""
        return self.data_dir.resolve() / "marketplaces"


@lru_cache
def get_settings() -> Settings:
    return Settings()
