"""The `customers` command: every process of the service starts here."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import typer
from pydantic import ValidationError

from customers.settings import Settings, get_settings

cli = typer.Typer(help="The customers projection service.", no_args_is_help=True, add_completion=False)
ROOT = Path(__file__).resolve().parent.parent

DEV_DEFAULTS = {
    "AUTH_JWT_SECRET": "local-dev-jwt-secret-not-for-production",
    "INGEST_TOKEN": "local-dev-ingest-token",
    "STRIPE_WEBHOOK_SECRET": "whsec_local_dev_secret",
    "CUSTOMER_ID_SECRET": "local-dev-customer-id-secret",
    "DEV_SIGN_IN": "true",
    # the local broker (scripts/infra-up.sh) is one; a three-broker cluster keeps the defaults (3 and 2)
    "TOPIC_REPLICATION_FACTOR": "1",
    "TOPIC_MIN_INSYNC_REPLICAS": "1",
}


def _logging(level: str = "INFO") -> None:
    from customers.logs import configure

    configure(level, key=get_settings().customer_id_secret)  # the key of the emails' pseudonyms


@cli.command()
def worker(metrics_port: int = typer.Option(8002, help="port of the worker's /metrics (0: none)")) -> None:
    """Consume the topics and keep the read model."""
    _logging()
    from streams.worker import run

    run(get_settings(), metrics_port=metrics_port or None)


@cli.command()
def api(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the read API and the pages."""
    import uvicorn

    from api.app import create_app

    _logging()
    uvicorn.run(create_app(get_settings()), host=host, port=port, access_log=False, log_config=None)


@cli.command()
def webhooks(host: str = "127.0.0.1", port: int = 8001) -> None:
    """Serve the intake: Stripe webhooks and booking events."""
    import uvicorn

    from webhooks.app import create_app

    settings = get_settings()
    if not settings.webhook_secrets or not settings.ingest_token:
        raise typer.BadParameter("STRIPE_WEBHOOK_SECRET and INGEST_TOKEN are required")
    _logging()
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_config=None)


@cli.command()
def migrate() -> None:
    """Bring the read-model schema up to date."""
    from projections.db import migrate_sync

    migrate_sync(get_settings().database_url)
    typer.echo("schema up to date")


@cli.command()
def token(expert_id: str, admin: bool = typer.Option(False, help="add the admin role"),
          hours: int = typer.Option(12, help="validity")) -> None:
    """Print a development bearer token (HS256) for an expert."""
    from api.auth import issue_token

    typer.echo(issue_token(get_settings(), expert_id, roles=["admin"] if admin else [], ttl_seconds=hours * 3600))


@cli.command()
def reconcile(since: datetime = typer.Option(..., formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
                                              help="UTC date or time to list Stripe events from")) -> None:
    """List Stripe's events since DATE and feed the ones never applied through the webhook path."""
    from ops.reconcile import reconcile as run

    counts = asyncio.run(run(get_settings(), since.replace(tzinfo=timezone.utc)))
    typer.echo(" ".join(f"{k}={v}" for k, v in counts.items()))


@cli.command()
def erase(email: str) -> None:
    """Erase a person (by email) from every expert's read model, for good."""
    from customers import kafka as names
    from customers.commands import erasure

    async def go():
        settings = get_settings()
        command = erasure(settings.customer_id_secret, email)
        async with names.LazyProducer(settings, timeout=60.0) as producer:  # the worker projects it
            await producer.publish(settings.topic(names.COMMANDS),
                                   [(command.kafka_key, command.model_dump_json().encode())])
        return command

    command = asyncio.run(go())
    typer.echo(f"erasure recorded: {command.email_hash[:12]}…")


dlq_cli = typer.Typer(help="Dead letters: records that could not be processed.", no_args_is_help=True)
cli.add_typer(dlq_cli, name="dlq")


@dlq_cli.command("list")
def dlq_list(topic: str = typer.Option(None, help="bookings | stripe-events | customer-activity | customer-commands | "
                                                   "communications | email-events (default: all)"),
             full: bool = typer.Option(False, help="print each letter's original value too")) -> None:
    """List dead letters with their origin and error."""
    import json

    from ops.dlq import letters

    for name, items in asyncio.run(letters(get_settings(), topic)).items():
        typer.echo(f"{name}.dlq: {len(items)}")
        for item in items:
            origin = item["origin"] or {}
            typer.echo(f"  [{item['partition']}@{item['offset']}] from {origin.get('topic')}"
                       f"[{origin.get('partition')}]@{origin.get('offset')}: {item['error']}")
            if full:
                typer.echo("    " + json.dumps(item["value"])[:2000])


@dlq_cli.command("retry")
def dlq_retry(topic: str = typer.Option(None, help="only this source topic's letters")) -> None:
    """Send dead letters not retried before back to their origin topic."""
    from ops.dlq import retry

    sent = asyncio.run(retry(get_settings(), topic))
    typer.echo(" ".join(f"{k}={v}" for k, v in sent.items()))


@cli.command()
def replay(show_status: bool = typer.Option(False, "--status", help="only report where replays stand"),
           grace: float = typer.Option(None, help="seconds to wait before removing the old version"),
           batch_size: int = typer.Option(2000, help="records per transaction on the live tail, after the fold"),
           processes: int = typer.Option(None, min=1, help="fold processes (default: the CPUs; 1 on SQLite)"),
           fold_batch: int = typer.Option(None, min=1, help="records the fold's rules take at once"),
           share_size: int = typer.Option(None, min=1, help="most records a fold process holds at once (its "
                                                             "memory: partitions are sliced to fit)")) -> None:
    """Rebuild the read model from offset zero into a new version, then switch readers to it."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from streams import fold
    from streams import replay as rp

    settings = get_settings()
    console = Console()
    if show_status:
        for v in asyncio.run(rp.status(settings))["versions"]:
            console.print(f"version {v['version']:>3}  {v['state']:<9} applied {v['applied']:>10} "
                          f"of {v['total']:>10}  lag {v['lag']}")
        return
    columns = (TextColumn("[bold]version {task.fields[version]}"), BarColumn(),
               TextColumn("{task.fields[done]:,}/{task.fields[size]:,}"), TextColumn("{task.fields[rate]:,.0f} ev/s"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("replay", total=None, version="?", rate=0.0, done=0, size=0)

        def show(p: "rp.Progress") -> None:
            bar.update(task, total=p.total, completed=p.done, version=p.version, rate=p.rate, done=p.done,
                       size=p.total)

        result = asyncio.run(rp.replay(settings, on_progress=show, grace=grace, batch_size=batch_size,
                                       processes=processes, fold_batch=fold_batch or fold.FOLD_BATCH,
                                       share_size=share_size or rp.SHARE_SIZE))
    console.print(f"version {result.version} is live ({'resumed' if result.resumed else 'new'}); "
                  f"{result.rate:,.0f} events/s")


def _wait_http(url: str, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise typer.Exit(f"{url} did not come up")


@cli.command()
def up(api_port: int = 8000, webhooks_port: int = 8001, demo: bool = True,
       infra: bool = typer.Option(True, help="start Kafka first (scripts/infra-up.sh)"),
       workers: int = typer.Option(1, min=1, max=8, help="workers in the consumer group (metrics on 8002, 8003, ...)")) -> None:
    """Local all-in-one: infrastructure, worker(s), api and webhooks on the embedded SQLite database."""
    env = {**os.environ}
    for key, value in DEV_DEFAULTS.items():
        env.setdefault(key, value)
    env["ENVIRONMENT"] = "local"  # development secrets and the dev sign-in: never anything else
    env.setdefault("DATABASE_URL", f"sqlite+aiosqlite:///{ROOT / 'data' / 'customers.db'}")
    if infra:
        subprocess.run(["bash", str(ROOT / "scripts" / "infra-up.sh")], check=True,
                       env={**env, "INFRA_SKIP_PG": "1", "INFRA_SKIP_STRIPE": "1"})
    logs = ROOT / "data" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    exe = [sys.executable, "-m", "ops"]
    procs = []
    workers_args = [(f"worker-{n}" if workers > 1 else "worker", ["worker", "--metrics-port", str(8001 + n)])
                    for n in range(1, workers + 1)]
    for name, args in (*workers_args, ("api", ["api", "--port", str(api_port)]),
                       ("webhooks", ["webhooks", "--port", str(webhooks_port)])):
        out = open(logs / f"{name}.log", "ab")
        procs.append(subprocess.Popen(exe + args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT))
    try:
        _wait_http(f"http://127.0.0.1:{api_port}/healthz")
        _wait_http(f"http://127.0.0.1:{webhooks_port}/healthz")
        settings = Settings(**{k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})
        from api.auth import issue_token

        if demo:
            from ops.demo import load_demo

            expert = asyncio.run(load_demo(settings, f"http://127.0.0.1:{webhooks_port}", f"http://127.0.0.1:{api_port}"))
        else:
            expert = "expert_demo"
        tok = issue_token(settings, expert, roles=["admin"])
        typer.echo(f"\nAPI       http://127.0.0.1:{api_port}/api/customers")
        typer.echo(f"Pages     http://127.0.0.1:{api_port}/customers")
        typer.echo(f"Intake    http://127.0.0.1:{webhooks_port}/events/bookings")
        typer.echo(f"Logs      {logs}")
        typer.echo(f"Token     {tok}\n")
        typer.echo(f'curl -H "Authorization: Bearer {tok}" http://127.0.0.1:{api_port}/api/customers\n')
        typer.echo("Running; Ctrl-C stops the worker, api and webhooks (make infra-down stops Kafka).")
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def refusal(exc: ValidationError) -> str:
    """The settings that stop a process, one a line, named as in the environment; never their values."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        name = ".".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {message}" if not name or message.startswith(name) else f"  {name}: {message}")
    return "customers: refusing to start, the settings are invalid:\n" + "\n".join(lines)


def main() -> None:
    logging.captureWarnings(True)
    try:
        cli()
    except ValidationError as exc:  # a setting, not a bug: a short message and a failed exit, no traceback
        if exc.title != Settings.__name__:
            raise
        raise SystemExit(refusal(exc)) from None


if __name__ == "__main__":
    main()
