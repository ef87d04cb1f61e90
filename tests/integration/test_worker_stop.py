"""A worker asked to stop (SIGTERM, as an orchestrator or `customers up` does) stops by itself:
its agents end their streams instead of crashing on the way out, and nothing waits for a SIGKILL."""

from datetime import datetime, timedelta, timezone
import subprocess

from testing import samples as s
from testing.harness import eventually, unique
from tests.integration.conftest import open_stack


async def test_sigterm_stops_the_worker_cleanly_after_it_applied_events():
    async with open_stack("sqlite") as stack:
        expert = unique("ex_")
        start = datetime.now(timezone.utc) + timedelta(days=3)
        assert (await stack.post_bookings([s.booking_created(expert, unique("m_"), "stop@example.com", "Stop",
                                                            start)])).status_code == 202

        async def listed():
            r = await stack.api.get("/api/customers", headers=stack.auth(expert))
            return r.json()["total"] == 1

        await eventually(listed)
        proc = stack.worker.proc
        proc.terminate()
        try:
            code = proc.wait(10)  # it used to hang until killed
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("the worker did not stop within 10 s of SIGTERM")
        log = stack.worker.log_path.read_text(errors="replace")
        assert "Crashed" not in log, "an agent crashed while the worker stopped"
        assert code == 0, f"exit status {code}"
