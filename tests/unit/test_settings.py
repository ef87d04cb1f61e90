"""Settings that cannot be unsafe: the development sign-in only in development, and outside it
no known, short or missing secret, and no token audience left open."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from ops.cli import DEV_DEFAULTS
from customers.settings import DEVELOPMENT_SECRETS, SECRETS, Settings

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = dict(
    environment="production",
    auth_jwt_secret="j" * 40,
    auth_jwt_audience="customers",
    ingest_token="i" * 40,
    stripe_webhook_secret="whsec_" + "w" * 40,
    customer_id_secret="c" * 40,
    database_url="postgresql+asyncpg://customers:" + "p" * 40 + "@db.internal/customers",
)


def refusal(**values) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)
    return str(caught.value)


def test_a_production_configuration_with_strong_secrets_starts():
    settings = Settings(**PRODUCTION)
    assert settings.environment == "production" and not settings.is_development
    assert Settings(**{**PRODUCTION, "auth_jwt_secret": "", "auth_jwks_url": "https://id.example/jwks.json"})


@pytest.mark.parametrize("environment", ["local", "test", "LOCAL", " Test "])
def test_dev_sign_in_works_in_development(environment):
    assert Settings(environment=environment, dev_sign_in=True).dev_sign_in


@pytest.mark.parametrize("environment", ["production", "Production", "PRODUCTION", "staging", "prod", "dev", ""])
def test_dev_sign_in_refuses_to_start_anywhere_else(environment):
    assert "DEV_SIGN_IN" in refusal(**{**PRODUCTION, "environment": environment, "dev_sign_in": True})


def test_production_rules_apply_whatever_the_case_of_the_environment():
    assert "CUSTOMER_ID_SECRET" in refusal(**{**PRODUCTION, "environment": "PRODUCTION",
                                              "customer_id_secret": "local-dev-customer-id-secret"})


@pytest.mark.parametrize("name", [n for n in SECRETS])
@pytest.mark.parametrize("value,why", [("short-but-unknown", "shorter than 32 bytes"),
                                       ("x" * 31, "shorter than 32 bytes"),
                                       ("local-dev-jwt-secret-not-for-production", "development value"),
                                       ("dev-only-change-me", "development value")])
def test_production_refuses_a_known_or_short_secret(name, value, why):
    message = refusal(**{**PRODUCTION, name: value})
    assert name.upper() in message and why in message


def test_every_stripe_webhook_secret_of_a_rotation_is_checked():
    message = refusal(**{**PRODUCTION, "stripe_webhook_secret": f"whsec_{'w' * 40},whsec_local_dev_secret"})
    assert "STRIPE_WEBHOOK_SECRET is a development value" in message


@pytest.mark.parametrize("name", ["customer_id_secret", "auth_jwt_secret"])
def test_production_refuses_an_empty_required_secret(name):
    assert f"{name.upper()} is required" in refusal(**{**PRODUCTION, name: ""})


def test_production_refuses_to_start_without_an_audience():
    assert "AUTH_JWT_AUDIENCE is required" in refusal(**{**PRODUCTION, "auth_jwt_audience": ""})


def test_production_refuses_the_development_database_password():
    url = "postgresql+asyncpg://customers:customers@postgres:5432/customers"
    assert "DATABASE_URL" in refusal(**{**PRODUCTION, "database_url": url})


def test_a_refusal_does_not_print_the_secrets():
    message = refusal(**{**PRODUCTION, "auth_jwt_audience": "", "ingest_token": "leaky-token-value"})
    assert "leaky-token-value" not in message and "j" * 40 not in message


def test_every_secret_setting_is_checked():
    looks_secret = {name for name in Settings.model_fields
                    if name.endswith(("_secret", "_token", "_key", "_password"))}
    assert looks_secret <= set(SECRETS)


def _compose_fallbacks() -> dict[str, str]:
    text = (ROOT / "docker-compose.yml").read_text()
    return dict(re.findall(r"\$\{(\w+):-([^}]*)\}", text))


def _env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_docker_compose_has_no_secret_fallbacks():
    text = (ROOT / "docker-compose.yml").read_text()
    for name in [n.upper() for n in SECRETS] + ["POSTGRES_PASSWORD"]:
        assert _compose_fallbacks().get(name, "") == "", f"{name} has a fallback in docker-compose.yml"
        assert f"{name}: ${{{name}" in text or name not in text, f"{name} is not taken from the environment"
    assert "POSTGRES_PASSWORD: customers" not in text


def test_every_development_secret_handed_out_is_refused_in_production():
    handed_out = {**_env_example(), **DEV_DEFAULTS}
    secrets = {k: v for k, v in handed_out.items() if k.lower() in SECRETS or k == "POSTGRES_PASSWORD"}
    assert secrets and set(secrets.values()) <= DEVELOPMENT_SECRETS
    for name, value in secrets.items():
        for setting in [n for n in SECRETS if n.upper() == name]:
            assert "development value" in refusal(**{**PRODUCTION, setting: value})
    assert "DATABASE_URL" in refusal(**{**PRODUCTION, "database_url":
                                        f"postgresql+asyncpg://customers:{secrets['POSTGRES_PASSWORD']}@db/customers"})
