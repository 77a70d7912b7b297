"""The ``amlwatch`` command line: one entry point, a subcommand per job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

from core.settings import Settings
from stream.broker import EmbeddedBroker, stop_process
from stream.cli_settings import load_settings

# A first model for the demo, trained in a few seconds on simulated history.
BOOTSTRAP_CUSTOMERS = 200
BOOTSTRAP_DAYS = 40
BOOTSTRAP_SEED = 2024

cli = typer.Typer(
    name="amlwatch",
    help="Transaction monitoring for anti-money-laundering duties.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold customer data
)


@cli.command()
def broker(
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 (default: AMLWATCH_EMBEDDED_BROKER_PORT).")
    ] = None,
) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, in memory) until Ctrl-C."""
    settings = load_settings()
    embedded = EmbeddedBroker(port if port is not None else settings.embedded_broker_port)
    with embedded:
        typer.echo(f"embedded broker listening on {embedded.bootstrap} (in memory; Ctrl-C stops)")
        try:
            embedded.wait()
        except KeyboardInterrupt:
            typer.echo("stopping the embedded broker")


@cli.command()
def worker(
    broker_url: Annotated[
        str | None, typer.Option(help="kafka://host:port (default: AMLWATCH_BROKER_URL).")
    ] = None,
    web_port: Annotated[int | None, typer.Option(help="Port for /healthz and /metrics.")] = None,
) -> None:
    """Run the stream worker: validate, dead-letter, apply the rule pack, score anomalies."""
    from stream.worker import run_worker

    settings = load_settings()
    if web_port is not None:
        settings = settings.model_copy(update={"web_port": web_port})
    run_worker(settings, broker_url=broker_url)


def _spawn(arguments: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "stream.cli", *arguments],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def bootstrap_model(
    settings: Settings, *, customers: int = BOOTSTRAP_CUSTOMERS, days: int = BOOTSTRAP_DAYS
) -> str | None:
    """Train and activate a first model on simulated history if the registry has none.

    Returns the new version, or None when the registry already holds a model (activated
    or not: that is the operators' choice to keep).
    """
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    import pandas as pd  # type: ignore[import-untyped]
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from core.transaction import transaction_from_mapping
    from models.features import country_risk_from_lists
    from models.registry import activate, list_versions
    from models.training import save_result, train_detector
    from stream.detection_engine import build_rule_engine
    from stream.simulator import derive_rng, generate_reference, iter_transactions

    registry = settings.model_registry
    if list_versions(registry):
        return None
    tz = ZoneInfo(settings.bank_timezone)
    reference = build_rule_engine(settings).reference
    start = datetime.now(tz).date() - timedelta(days=days)
    population, _managers = generate_reference(
        derive_rng(BOOTSTRAP_SEED, "bootstrap-reference"), customers, 1, as_of=start
    )
    documents = iter_transactions(
        derive_rng(BOOTSTRAP_SEED, "bootstrap-history"), population, start=start, days=days, tz=tz
    )
    rows: list[dict[str, object]] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        simulating = progress.add_task("simulating history (days)", total=days)
        day = None
        for document in documents:
            tx = transaction_from_mapping(document)
            amount_cny = reference.rates.to_cny(tx.amount, tx.currency)
            rows.append({**tx.to_dict(), "amount_cny": amount_cny})
            if document["timestamp"][:10] != day:
                day = document["timestamp"][:10]
                progress.advance(simulating)
        progress.update(simulating, completed=days)
        progress.add_task(f"training on {len(rows):,} transactions", total=None)
        lists = reference.country_lists
        result = train_detector(
            pd.DataFrame(rows),
            {customer.customer_id: customer for customer in population},
            country_risk_from_lists(grey=lists.grey, black=lists.black),
            tz,
        )
        artefact = save_result(result, registry)
        activate(registry, artefact.version)
    typer.echo(
        f"model     no model in {registry}: trained {artefact.version} on {len(rows):,} "
        f"simulated transactions ({customers} customers x {days} days) and activated it"
    )
    return artefact.version


def _import_simulated_reference(settings: Settings, *, since: float) -> bool:
    """Import the simulator's managers and customers into the case store once it wrote them.

    Without them every case would route to the compliance queue. False while the files
    of this run are not there yet.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from alerts.actors import Actor, Role
    from alerts.imports import import_customers, import_managers
    from core.errors import AmlwatchError
    from stream.case_store import CaseStore

    directory = settings.data_dir / "sim"
    managers, customers = directory / "managers.csv", directory / "customers.csv"
    if not all(path.exists() and path.stat().st_mtime >= since for path in (managers, customers)):
        return False
    actor = Actor("amlwatch-up", Role.ADMIN)
    try:
        with CaseStore.open(settings) as store, store.session_scope() as session:
            imported_managers = import_managers(session, managers, actor=actor)
            imported_customers = import_customers(session, customers, actor=actor)
    except (AmlwatchError, SQLAlchemyError):
        # Most likely a file still being written, or the worker still migrating the
        # store: the next round tries again.
        return False
    typer.echo(
        f"cases     {store}: imported the simulated reference data "
        f"({imported_managers.inserted + imported_managers.updated} managers, "
        f"{imported_customers.inserted + imported_customers.updated} customers changed)"
    )
    return True


@cli.command()
def up(
    simulate: Annotated[bool, typer.Option(help="Also run the simulator into the topic.")] = False,
    rate: Annotated[float, typer.Option(help="Simulator messages per second.")] = 50.0,
    malformed_rate: Annotated[
        float, typer.Option(help="Fraction of simulated messages that are malformed.")
    ] = 0.01,
    web_port: Annotated[int, typer.Option(help="Port of the web app (pages and API).")] = 8000,
) -> None:
    """Start broker (when embedded) + worker (+ simulator) together; Ctrl-C stops all."""
    settings = load_settings()
    # Ctrl-C and a plain `kill` must stop the children too, not orphan them. SIGINT is
    # set as well: a shell that starts us in the background leaves it ignored, and
    # Python then keeps it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logs = settings.data_dir / "logs"
    if simulate:
        bootstrap_model(settings)
    env = dict(os.environ)
    embedded: EmbeddedBroker | None = None
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        if settings.uses_embedded_broker:
            embedded = EmbeddedBroker(
                settings.embedded_broker_port,
                logs / "broker.log",
                avoid_ports={settings.web_port, web_port},
            ).start()
            env["AMLWATCH_BROKER_URL"] = embedded.url
            # Still the embedded broker: keep its workarounds on.
            env["AMLWATCH_DEV_BROKER_PROFILE"] = "true"
            typer.echo(f"broker    {embedded.bootstrap} (embedded, in memory)")
        if simulate and settings.customers_file is None:
            # The simulator writes its customers here; the worker re-reads the file
            # when it appears, so the rules know who is a company.
            env["AMLWATCH_CUSTOMERS_FILE"] = str(settings.data_dir / "sim" / "customers.csv")
        children.append(("worker", _spawn(["worker"], env, logs / "worker.log")))
        children.append(("web", _spawn(["web", "--port", str(web_port)], env, logs / "web.log")))
        typer.echo(f"web       http://{settings.web_host}:{web_port}/  (log: {logs / 'web.log'})")
        web = f"http://{settings.web_host}:{settings.web_port}"
        typer.echo(f"worker    {web}/healthz  {web}/metrics  (log: {logs / 'worker.log'})")
        if simulate:
            arguments = ["simulate", "--rate", str(rate), "--malformed-rate", str(malformed_rate)]
            children.append(("simulator", _spawn(arguments, env, logs / "simulator.log")))
            typer.echo(f"simulator {rate:g} msg/s into '{settings.transactions_topic}'")
            typer.echo(
                f"detections go to '{settings.alerts_topic}' and '{settings.reports_topic}'; "
                "counts by rule: amlwatch_detections_total on /metrics"
            )
        typer.echo("Ctrl-C stops everything.")
        announced_ready = False
        reference_pending = simulate
        logins_shown = False
        started = time.time()
        while True:
            if not announced_ready and _answers(f"{web}/healthz"):
                typer.echo(f"worker ready: curl {web}/metrics")
                announced_ready = True
            if reference_pending:
                reference_pending = not _import_simulated_reference(settings, since=started)
            if not reference_pending and not logins_shown:
                from stream.web_command import announce_demo_logins

                logins_shown = announce_demo_logins(settings)
            for name, process in children:
                if process.poll() is not None:
                    typer.echo(f"{name} exited with code {process.returncode}; stopping", err=True)
                    raise typer.Exit(1)
            time.sleep(0.5)
    except KeyboardInterrupt:
        typer.echo("stopping")
    finally:
        # Producers first, then the worker (it commits on the way out), then the broker.
        for _name, process in reversed(children):
            stop_process(process, timeout=15.0)
        if embedded is not None:
            embedded.stop()


def _register_commands() -> None:
    from stream.backtest_command import backtest
    from stream.case_commands import audit_cli, db_cli, import_cli, managers_cli
    from stream.model_command import model_cli
    from stream.report_commands import report_cli
    from stream.rules_command import rules_cli
    from stream.simulate_command import simulate
    from stream.user_commands import users_cli
    from stream.web_command import web

    cli.command("simulate")(simulate)
    cli.command("backtest")(backtest)
    cli.add_typer(rules_cli, name="rules")
    cli.add_typer(model_cli, name="model")
    cli.add_typer(import_cli, name="import")
    cli.add_typer(managers_cli, name="managers")
    cli.add_typer(audit_cli, name="audit")
    cli.add_typer(db_cli, name="db")
    cli.add_typer(report_cli, name="report")
    cli.add_typer(users_cli, name="users")
    cli.command("web")(web)


_register_commands()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
