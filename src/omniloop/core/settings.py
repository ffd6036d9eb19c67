"""The one place configuration is read. Nothing else in omniloop looks at the environment."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings from `OMNILOOP_*` environment variables (or a `.env` file beside the process)."""

    model_config = SettingsConfigDict(env_prefix="OMNILOOP_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("var"), description="Where the embedded database lives.")
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means the embedded SQLite file under data_dir.",
    )
    redis_url: str | None = None
    secret_key: str = Field(
        default="",
        description="Signs sessions and tokens; empty means a key generated once into data_dir.",
    )
    base_url: str = "http://127.0.0.1:8000"
    default_locale: str = "zh_TW"
    default_timezone: str = "Asia/Taipei"
    default_currency: str = "TWD"
    session_idle_seconds: int = 8 * 3600
    login_max_failures: int = 5
    login_lockout_seconds: int = 15 * 60
    sqlite_busy_timeout_ms: int = 5000
    redemption_void_minutes: int = Field(
        default=30, description="How long after a redemption the POS may still void it.")
    pos_guess_limit: int = Field(
        default=20, description="Failed code lookups (unknown codes, bad QR tokens) allowed "
                                "per API key, staff member or IP within the window.")
    pos_guess_window_seconds: int = 600
    # Messaging (docs/messaging.md)
    line_api_base_url: str = Field(
        default="https://api.line.me", description="LINE Messaging API address (tests point "
                                                   "it at a local stand-in).")
    messaging_max_attempts: int = Field(
        default=6, description="Tries per message before it becomes a dead letter.")
    messaging_retry_base_seconds: float = Field(
        default=30.0, description="Wait before the 2nd try; doubles with every further try.")
    messaging_retry_max_seconds: float = 3600.0
    messaging_lease_seconds: int = Field(
        default=120, description="How long a claimed message is left to its worker before "
                                 "another may take it over (the first one crashed).")
    messaging_claim_size: int = 5000
    messaging_send_threads: int = 4
    messaging_rate_per_second: dict[str, int] = Field(
        default_factory=lambda: {"line": 1000, "email": 20, "sms": 20, "webhook": 50},
        description="Requests per second per brand and channel.")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'omniloop.db').as_posix()}"

    def resolved_secret_key(self) -> str:
        """The configured key, or one generated on first use and kept in data_dir.

        Keeping the generated key on disk means sessions survive a restart of the embedded
        install without the operator having to invent a secret.
        """
        if self.secret_key:
            return self.secret_key
        key_file = self.data_dir / "secret_key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_urlsafe(48))
            key_file.chmod(0o600)
        return key_file.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
