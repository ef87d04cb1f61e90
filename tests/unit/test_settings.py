"""Settings that cannot be unsafe: the development sign-in only in development, and outside it
no known, short or missing secret, and no token audience left open."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from ops.cli import DEV_DEFAULTS
from customers.settings import DEVELOPMENT_SECRETS, SECRETS, Settings
from testing.harness import RESEND_SECRET, env_for, settings_for

ROOT = Path(__file__).resolve().parents[2]
FORMATTED = ("stripe_webhook_secret", "stripe_api_key", "resend_webhook_secret")  # by a prefix or an encoding
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


@pytest.mark.parametrize("name", [n for n in SECRETS if n not in FORMATTED])
@pytest.mark.parametrize("value,why", [("short-but-unknown", "shorter than 32 bytes"),
                                       ("x" * 31, "shorter than 32 bytes"),
                                       ("local-dev-jwt-secret-not-for-production", "development value"),
                                       ("dev-only-change-me", "development value")])
def test_production_refuses_a_known_or_short_secret(name, value, why):
    message = refusal(**{**PRODUCTION, name: value})
    assert name.upper() in message and why in message


@pytest.mark.parametrize("name,value,why", [("stripe_webhook_secret", "whsec_short", "shorter than 32 bytes"),
                                            ("stripe_webhook_secret", "whsec_local_dev_secret", "development value"),
                                            ("stripe_api_key", "sk_live_short", "shorter than 32 bytes")])
def test_production_refuses_a_short_or_known_secret_in_its_format(name, value, why):
    message = refusal(**{**PRODUCTION, name: value})
    assert name.upper() in message and why in message


# --- every secret in its format, in every environment ---------------------------------------------

def svix(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


MALFORMED = [
    ("resend_webhook_secret", "whsec_" + "-" * 40 + "AA"),  # leniently decoded: the key would be b"\x00"
    ("resend_webhook_secret", "whsec_a"),  # not base64 at all
    ("resend_webhook_secret", base64.b64encode(b"k" * 32).decode()),  # no whsec_
    ("resend_webhook_secret", svix(b"k" * 23)),  # too short a key
    ("resend_webhook_secret", svix(b"k" * 32)[:20] + " " + svix(b"k" * 32)[20:]),  # strict: nothing but base64
    ("resend_webhook_secret", f"{svix(b'k' * 32)},whsec_a"),  # each secret of a rotation
    ("stripe_webhook_secret", "w" * 40),
    ("stripe_webhook_secret", "whsec_"),
    ("stripe_webhook_secret", "whsec_" + "w" * 40 + ",sk_test_oops"),
    ("stripe_api_key", "pk_live_" + "k" * 40),  # a publishable key is no secret key
    ("ingest_token", "token with spaces " + "i" * 40),
    ("ingest_token", "ïngest-" + "i" * 40),
    ("auth_jwt_secret", "j" * 40 + "\n"),
    ("customer_id_secret", " " + "c" * 40),
]


@pytest.mark.parametrize("environment", ["local", "test", "production"])
@pytest.mark.parametrize("name,value", MALFORMED)
def test_a_malformed_secret_refuses_to_start_in_every_environment(environment, name, value):
    message = refusal(**{**PRODUCTION, "environment": environment, name: value})
    assert name.upper() in message
    assert len(value) < 10 or value.strip() not in message  # the refusal names the setting, never its value


def test_secrets_in_their_formats_start():
    assert Settings(environment="local", resend_webhook_secret=svix(b"k" * 24)).resend_secrets == [svix(b"k" * 24)]
    settings = Settings(**{**PRODUCTION, "resend_webhook_secret": f" {svix(b'k' * 24)} , {RESEND_SECRET} ",
                           "stripe_api_key": "rk_live_" + "k" * 40})
    assert settings.resend_secrets == [svix(b"k" * 24), RESEND_SECRET]
    assert settings_for("sqlite+aiosqlite:///unused.db", stripe_api_key="sk_test_123").stripe_api_key
    development = Settings(**{k.lower(): v for k, v in {**_env_example(), **DEV_DEFAULTS}.items()
                              if k.lower() in Settings.model_fields})
    assert development.is_development and development.webhook_secrets == ["whsec_local_dev_secret"]


@pytest.mark.parametrize("secret", ["whsec_" + "-" * 40 + "AA", "whsec_a"])
def test_the_email_endpoint_is_never_built_with_a_malformed_secret(secret):
    """The intake refuses to start rather than answering 500 or taking a guessable key."""
    from webhooks.app import create_app

    with pytest.raises(ValidationError, match="RESEND_WEBHOOK_SECRET"):
        create_app(settings_for("sqlite+aiosqlite:///unused.db", resend_webhook_secret=secret))


# --- the environment ------------------------------------------------------------------------------

def test_an_unset_environment_is_production(monkeypatch):
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    assert "refusing to start with ENVIRONMENT=production" in refusal(dev_sign_in=True)
    assert "DEV_SIGN_IN" in refusal(**{k: v for k, v in PRODUCTION.items() if k != "environment"}, dev_sign_in=True)
    assert not Settings(**{k: v for k, v in PRODUCTION.items() if k != "environment"}).is_development


def test_every_development_entry_point_names_its_environment():
    assert _env_example()["ENVIRONMENT"] == "local"
    makefile = (ROOT / "Makefile").read_text()
    assert "up: export ENVIRONMENT = local" in makefile
    assert re.search(r"^test test-unit test-integration test-e2e test-faults bench: export ENVIRONMENT = test$",
                     makefile, re.M)
    assert env_for(settings_for("sqlite+aiosqlite:///unused.db"))["ENVIRONMENT"] == "test"  # the test processes


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
