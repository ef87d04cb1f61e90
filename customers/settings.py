"""The service's one settings class, read from the environment and validated at start-up."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PLACEHOLDER = "dev-only-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    environment: str = "local"  # local | test | production
    kafka_bootstrap_servers: str = "localhost:9092"
    database_url: str = f"sqlite+aiosqlite:///{Path('data/customers.db').absolute()}"
    topic_prefix: str = ""
    topic_partitions: int = 4

    stripe_webhook_secret: str = ""
    stripe_api_key: str = ""
    stripe_api_base: str = ""

    auth_jwt_secret: str = ""
    auth_jwks_url: str = ""
    auth_jwt_issuer: str = ""
    auth_jwt_audience: str = ""
    ingest_token: str = ""
    customer_id_secret: str = DEV_PLACEHOLDER

    dev_sign_in: bool = False
    notes_visible_wait_seconds: float = 3.0
    ready_max_lag: int = 10_000
    kafka_session_timeout: float = 10.0  # seconds before a dead worker's partitions move
    worker_batch_size: int = 2000
    worker_batch_window: float = 0.05
    dlq_max_attempts: int = 3
    fault_kill_after_batches: int = 0  # tests only: SIGKILL after the Nth committed batch

    @field_validator("stripe_webhook_secret")
    @classmethod
    def _strip(cls, value: str) -> str:
        return ",".join(s.strip() for s in value.split(",") if s.strip())

    @model_validator(mode="after")
    def _refuse_placeholders_outside_dev(self) -> "Settings":
        if self.environment == "production":
            if self.customer_id_secret == DEV_PLACEHOLDER or len(self.customer_id_secret) < 16:
                raise ValueError("CUSTOMER_ID_SECRET must be set to a real secret (16+ chars) in production")
            if not (self.auth_jwt_secret or self.auth_jwks_url):
                raise ValueError("AUTH_JWT_SECRET or AUTH_JWKS_URL is required in production")
            if self.dev_sign_in:
                raise ValueError("DEV_SIGN_IN cannot be enabled in production")
            if self.fault_kill_after_batches:
                raise ValueError("FAULT_KILL_AFTER_BATCHES is for tests only")
        return self

    @property
    def webhook_secrets(self) -> list[str]:
        return [s for s in self.stripe_webhook_secret.split(",") if s]

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def consumer_group(self) -> str:
        return f"{self.topic_prefix}customers-projection"


@lru_cache
def get_settings() -> Settings:
    return Settings()
