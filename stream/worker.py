"""Run the long-lived Faust worker for the built app."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import faust

from core.settings import Settings
from stream.app import DEV_SESSION_TIMEOUT_SECONDS, AmlwatchApp, build_app
from stream.case_agent import build_dispatcher, register_case_agents
from stream.case_store import CaseStore
from stream.collector import CollectorPauses, freeze_long_lived, tune_collector
from stream.customers import CustomerDirectory
from stream.detection_engine import build_rule_engine

log = logging.getLogger(__name__)
_DEV_JOIN_DELAY = DEV_SESSION_TIMEOUT_SECONDS + 1.0


def run_worker(settings: Settings, *, broker_url: str | None = None) -> None:
    """Start the worker and block until it is stopped (SIGINT/SIGTERM)."""
    customers = CustomerDirectory(settings.customers_file)
    # Read before the first message: rules depend on the customer type.
    customers.refresh()
    built = build_app(
        settings,
        engine=build_rule_engine(settings),
        customers=customers,
        broker_url=broker_url,
    )
    # Before the first message too: a worker that starts with a model scores from the start.
    built.live_model.load_at_start()
    store = CaseStore.open(settings)
    register_case_agents(
        built,
        store,
        build_dispatcher(settings, store, built.metrics.registry),
        escalation_check_seconds=settings.escalation_check_seconds,
    )
    if settings.use_dev_broker_profile:
        # A worker killed a moment ago is still a member of the group until its session
        # expires; joining before that means a second rebalance moments after the
        # first, and Faust can lose fetched records in that race (see OffsetJumpWatch).
        log.info("waiting %.0fs for a predecessor's group session to expire", _DEV_JOIN_DELAY)
        time.sleep(_DEV_JOIN_DELAY)
    # Faust creates only the last component of its data directory.
    Path(built.faust_app.conf.datadir).parent.mkdir(parents=True, exist_ok=True)
    keep_long_lived_out_of_collections(built)
    worker = faust.Worker(
        built.faust_app,
        loglevel=settings.log_level,
    )
    worker.execute_from_commandline()


def keep_long_lived_out_of_collections(built: AmlwatchApp) -> None:
    """The collector policy of ``stream.collector``: time every collection, collect the
    young less often, and freeze what exists now and after each table recovery."""
    pauses = CollectorPauses(built.metrics.registry)
    pauses.install()
    tune_collector()

    def freeze(moment: str) -> None:
        frozen = freeze_long_lived()
        pauses.frozen.set(frozen)
        log.info("%s: %d long-lived objects kept out of collections", moment, frozen)

    # A Faust signal receiver: called with the sender and keyword arguments.
    def freeze_recovered_table(_sender: Any, *_: Any, signal: Any, **__: Any) -> None:
        freeze("table recovered")

    # mode types the receiver with mypy_extensions argument kinds mypy does not match here.
    built.faust_app.on_rebalance_complete.connect(freeze_recovered_table)  # type: ignore[arg-type]
    freeze("started")
