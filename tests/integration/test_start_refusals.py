"""A process whose settings are malformed refuses to start and says which setting is wrong; it never
comes up to answer requests with a 500 or to take a key anyone could guess."""

from __future__ import annotations

import pytest

from testing.harness import ServiceProcess, settings_for


@pytest.mark.parametrize("secret", ["whsec_a", "whsec_" + "-" * 40 + "AA"])
def test_the_intake_refuses_to_start_with_a_malformed_email_secret(tmp_path, secret):
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'customers.db'}")
    intake = ServiceProcess(settings, "webhooks", name="webhooks-malformed-secret",
                            extra_env={"RESEND_WEBHOOK_SECRET": secret})
    try:
        with pytest.raises(RuntimeError, match="exited"):
            intake.start(timeout=30)
    finally:
        intake.stop()
    assert intake.proc is not None and intake.proc.returncode == 1
    log = intake.log_path.read_text()
    assert "refusing to start" in log and "RESEND_WEBHOOK_SECRET" in log
    assert "Traceback" not in log and secret not in log
