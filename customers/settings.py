"""The service's one settings class, read from the environment and validated at start-up."""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEV_PLACEHOLDER = "dev-only-change-me"
DEVELOPMENT_ENVIRONMENTS = frozenset({"local", "test"})
# Every secret this repository hands out for development (`customers up`, `.env.example` for
# docker compose, the local PostgreSQL role): outside development they are refused at any length.
DEVELOPMENT_SECRETS = frozenset({
    DEV_PLACEHOLDER,
    "local-dev-jwt-secret-not-for-production",
    "local-dev-ingest-token",
    "whsec_local_dev_secret",
    "local-dev-customer-id-secret",
    "customers",
})
MIN_SECRET_BYTES = 32
SECRETS = ("auth_jwt_secret", "ingest_token", "stripe_webhook_secret", "customer_id_secret", "stripe_api_key",
           "resend_webhook_secret")
ROTATED_SECRETS = ("stripe_webhook_secret", "resend_webhook_secret")  # comma-separated lists
WEBHOOK_SECRET_PREFIX = "whsec_"
SVIX_MIN_KEY_BYTES = 24  # the email provider's keys are 24 random bytes
STRIPE_KEY_PREFIXES = ("sk_", "rk_")  # secret and restricted API keys


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", hide_input_in_errors=True)  # no secret in logs

    environment: str = "production"  # local | test | production (any other, or unset: production's rules)
    kafka_bootstrap_servers: str = "localhost:9092"
    database_url: str = f"sqlite+aiosqlite:///{Path('data/customers.db').absolute()}"
    # where the API and the pages read (a PostgreSQL streaming replica); unset: DATABASE_URL
    read_database_url: str | None = None
    topic_prefix: str = ""
    topic_partitions: int = 4
    # the replicas of every topic the service creates, and how many must hold a record before Kafka
    # acknowledges it (acks=all): a three-broker cluster's. One broker says 1 and 1 explicitly.
    topic_replication_factor: int = Field(default=3, ge=1)
    topic_min_insync_replicas: int = Field(default=2, ge=1)

    stripe_webhook_secret: str = ""
    stripe_api_key: str = ""
    stripe_api_base: str = ""
    stripe_livemode: bool | None = None  # unset: live in production, test mode in local and test
    stripe_connect_endpoint: bool = False  # the endpoint receives connected accounts' events
    resend_webhook_secret: str = ""  # Svix signing secrets (whsec_…), comma-separated; unset: no Resend endpoint

    auth_jwt_secret: str = ""
    auth_jwks_url: str = ""
    auth_jwt_issuer: str = ""
    auth_jwt_audience: str = ""
    ingest_token: str = ""
    intake_max_body_bytes: int = Field(default=1 << 20, ge=1024)  # Stripe's events are far smaller
    intake_max_events: int = Field(default=500, ge=1)  # events in one request of the booking platform
    # bodies of the read API and pages: 50 field definitions of 50 choices each fit
    api_max_body_bytes: int = Field(default=256 << 10, ge=1024)
    customer_id_secret: str = DEV_PLACEHOLDER

    dev_sign_in: bool = False
    http_telemetry: bool = False  # FastAPI's native OpenTelemetry (`customers.telemetry`)
    notes_visible_wait_seconds: float = 3.0
    ready_max_lag: int = 10_000
    kafka_session_timeout: float = 10.0  # seconds before a dead worker's partitions move
    # how long the intake and the API wait for Kafka's acknowledgement before answering 503
    kafka_publish_timeout_seconds: float = Field(default=8.0, gt=0, le=60)
    worker_batch_size: int = 2000
    worker_batch_window: float = 0.0
    worker_data_dir: str = ""  # Faust's folder; empty: <system temp folder>/customers-worker
    # how often the worker applies the passing of time (appointments becoming past): at least once a minute
    sweep_interval_seconds: float = Field(default=30.0, gt=0, le=60)
    dlq_max_attempts: int = 3
    # how long dead letters (originals with personal data) are kept before Kafka deletes them
    dlq_retention_days: float = Field(default=14, gt=0, le=3650)
    # a worker that starts more than this many records behind folds the backlog in bulk (0: never)
    catchup_threshold: int = Field(default=50_000, ge=0)
    catchup_max_records: int = Field(default=100_000, ge=1_000)  # records per catch-up round
    catchup_max_rows: int = Field(default=1_000_000, ge=10_000)  # rows a catch-up holds before reloading (its memory)
    catchup_check_seconds: float = Field(default=30.0, gt=0)  # how often a running worker compares its backlog with it
    # rows the worker's state holds (PostgreSQL) before it forgets the experts least recently touched
    worker_state_max_rows: int = Field(default=1_600_000, ge=10_000)
    # a customer is `new` while their first appointment is upcoming or this recent, `active` with an
    # appointment upcoming or this recent, else `lapsed` (`projections.rules.status`)
    customer_new_days: int = Field(default=30, ge=1, le=3650)
    customer_active_days: int = Field(default=90, ge=1, le=3650)

    @field_validator(*ROTATED_SECRETS)
    @classmethod
    def _strip(cls, value: str) -> str:
        return ",".join(s.strip() for s in value.split(",") if s.strip())

    @field_validator(*SECRETS)
    @classmethod
    def _in_its_format(cls, value: str, info: ValidationInfo) -> str:
        """Every secret is checked in every environment: a malformed one stops the process here
        rather than failing requests later."""
        problem = _malformed(info.field_name, value)
        if problem:
            raise ValueError(f"{info.field_name.upper()} {problem}")
        return value

    @field_validator("stripe_livemode", mode="before")
    @classmethod
    def _unset_when_empty(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: str) -> str:
        return value.strip().lower()

    @property
    def is_development(self) -> bool:
        """`local` or `test`; any other environment is held to production's rules."""
        return self.environment in DEVELOPMENT_ENVIRONMENTS

    @model_validator(mode="after")
    def _replicas_possible(self) -> "Settings":
        """In every environment: more in-sync replicas than replicas would refuse every record."""
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(f"TOPIC_MIN_INSYNC_REPLICAS ({self.topic_min_insync_replicas}) is more than "
                             f"TOPIC_REPLICATION_FACTOR ({self.topic_replication_factor})")
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_outside_development(self) -> "Settings":
        if self.is_development:
            return self
        problems = []
        if self.dev_sign_in:
            problems.append("DEV_SIGN_IN works only when ENVIRONMENT is local or test")
        if not self.auth_jwt_audience:
            problems.append("AUTH_JWT_AUDIENCE is required (tokens meant for another service must not work here)")
        required = {"customer_id_secret"} | ({"auth_jwt_secret"} if not self.auth_jwks_url else set())  # else JWKS
        for name in SECRETS:
            values = (self.webhook_secrets if name == "stripe_webhook_secret" else
                      self.resend_secrets if name == "resend_webhook_secret" else [getattr(self, name)])
            for value in values:
                weak = _weak_secret(value, required=name in required)
                if weak:
                    problems.append(f"{name.upper()} {weak}")
        if _database_password(self.database_url) in DEVELOPMENT_SECRETS:
            problems.append("DATABASE_URL carries a development password")
        if self.read_database_url and _database_password(self.read_database_url) in DEVELOPMENT_SECRETS:
            problems.append("READ_DATABASE_URL carries a development password")
        if problems:
            raise ValueError(f"refusing to start with ENVIRONMENT={self.environment}: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _statuses_in_order(self) -> "Settings":
        if self.customer_new_days > self.customer_active_days:
            raise ValueError(f"CUSTOMER_NEW_DAYS ({self.customer_new_days}) must not exceed "
                             f"CUSTOMER_ACTIVE_DAYS ({self.customer_active_days})")
        return self

    @property
    def reads_from(self) -> str:
        """The database the API and the pages read: the replica when there is one."""
        return self.read_database_url or self.database_url

    @property
    def livemode(self) -> bool:
        """Which Stripe mode's events this deployment takes (STRIPE_LIVEMODE, else by environment)."""
        return (not self.is_development) if self.stripe_livemode is None else self.stripe_livemode

    @property
    def resend_secrets(self) -> list[str]:
        return [s.strip() for s in self.resend_webhook_secret.split(",") if s.strip()]

    @property
    def webhook_secrets(self) -> list[str]:
        return [s for s in self.stripe_webhook_secret.split(",") if s]

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def consumer_group(self) -> str:
        return f"{self.topic_prefix}customers-projection"


def _malformed(name: str, value: str) -> str | None:
    """Why `value` cannot work as the secret `name` (None: its format is right). Unset is no format."""
    items = [s.strip() for s in value.split(",") if s.strip()] if name in ROTATED_SECRETS else [value]
    for item in filter(None, items):
        if item != item.strip() or not item.isprintable():
            return "has surrounding spaces or control characters"
        if name == "ingest_token" and not (item.isascii() and " " not in item):
            return "must be ASCII without spaces (senders put it in an HTTP header)"
        if name == "stripe_webhook_secret" and not (item.startswith(WEBHOOK_SECRET_PREFIX)
                                                    and len(item) > len(WEBHOOK_SECRET_PREFIX)):
            return "must start with whsec_, as Stripe shows the endpoint's signing secret (each one of a list)"
        if name == "stripe_api_key" and not item.startswith(STRIPE_KEY_PREFIXES):
            return "must be a Stripe secret or restricted key (sk_… or rk_…)"
        if name == "resend_webhook_secret" and not _svix_key(item):
            return (f"must be whsec_ followed by the base64 of at least {SVIX_MIN_KEY_BYTES} bytes, as the "
                    "email provider shows the signing secret (each one of a list)")
    return None


def _svix_key(secret: str) -> bytes | None:
    """The signing key of a Svix secret (`whsec_` + strict base64), None when it is not one."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        return None
    try:
        key = base64.b64decode(secret[len(WEBHOOK_SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) >= SVIX_MIN_KEY_BYTES else None


def _weak_secret(value: str, *, required: bool) -> str | None:
    """Why `value` is no secret for production (None: it will do). Unset is fine when optional."""
    if not value:
        return "is required" if required else None
    if value in DEVELOPMENT_SECRETS:
        return "is a development value"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes"
    return None


def _database_password(url: str) -> str | None:
    try:
        return make_url(url).password
    except ArgumentError:
        return None


@lru_cache
def get_settings() -> Settings:
    return Settings()
