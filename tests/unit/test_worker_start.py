"""A worker whose broker disappears between its preparation and Faust's bootstrap starts again
instead of exiting (a supervisor-free deployment would otherwise lose its worker)."""

import subprocess
import sys
import textwrap

from testing.harness import ROOT, free_port

SCRIPT = textwrap.dedent("""
    import sys
    import streams.worker as worker
    from customers.settings import Settings

    async def prepared(settings):  # as if the broker answered during preparation
        return 1

    def restart():
        print("RESTARTING", flush=True)
        sys.exit(42)

    worker.prepare, worker.restart_process, worker.RESTART_DELAY = prepared, restart, 0.1
    worker.run(Settings(environment="test", kafka_bootstrap_servers="127.0.0.1:%d",
                        database_url="sqlite+aiosqlite:///%s"))
""")


def test_a_worker_that_cannot_bootstrap_starts_again(tmp_path):
    closed = free_port()  # nothing listens there
    done = subprocess.run([sys.executable, "-c", SCRIPT % (closed, tmp_path / "c.db")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert "Unable to bootstrap" in done.stderr
    assert "starting again" in done.stderr
    assert "RESTARTING" in done.stdout
    assert done.returncode == 42
