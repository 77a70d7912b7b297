"""`amlwatch up --simulate`: the one-command demo brings everything up and down."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from stream.broker import free_loopback_port

pytestmark = pytest.mark.integration


def processed(base_url: str) -> float | None:
    try:
        text = httpx.get(f"{base_url}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("amlwatch_transactions_processed_total "):
            return float(line.split()[1])
    return None


def wait_for(condition, timeout: float, what: str, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout}s\n{log.read_text(errors='replace')[-3000:]}")


def test_up_with_simulator_processes_a_rising_count_and_stops_everything(tmp_path: Path) -> None:
    web_port = free_loopback_port()
    app_port = free_loopback_port(avoid={web_port})
    base_url = f"http://127.0.0.1:{web_port}"
    env = {
        **os.environ,
        "AMLWATCH_EMBEDDED_BROKER_PORT": "0",
        "AMLWATCH_WEB_PORT": str(web_port),
        "AMLWATCH_DATA_DIR": str(tmp_path / "data"),
        "AMLWATCH_APP_ID": f"up{uuid.uuid4().hex[:8]}",
    }
    env.pop("AMLWATCH_BROKER_URL", None)
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stream.cli",
                "up",
                "--simulate",
                "--rate",
                "100",
                "--web-port",
                str(app_port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for(lambda: (processed(base_url) or 0) > 0, 90, "no transaction processed", log)
        first = processed(base_url)
        assert first is not None
        wait_for(lambda: (processed(base_url) or 0) > first, 30, "count did not rise", log)
        wait_for(
            lambda: "imported the simulated reference data" in log.read_text(errors="replace"),
            60,
            "the simulated managers and customers never reached the case store",
            log,
        )
        app_health = f"http://127.0.0.1:{app_port}/healthz"
        wait_for(lambda: httpx.get(app_health, timeout=2).status_code == 200, 60, "no web app", log)
        wait_for(
            lambda: "login     manager" in log.read_text(errors="replace"), 60, "no demo login", log
        )
        login = next(
            line.split()
            for line in log.read_text(errors="replace").splitlines()
            if line.startswith("login     manager")
        )
        user_id, password = login[3], login[5]
        token = httpx.post(
            f"http://127.0.0.1:{app_port}/api/token",
            json={"user_id": user_id, "password": password},
            timeout=10,
        )
        assert token.status_code == 200, token.text
        cases = httpx.get(
            f"http://127.0.0.1:{app_port}/api/cases",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=10,
        )
        assert cases.status_code == 200, "the printed demo manager login works"
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 3, "broker, worker and simulator run as child processes"

        up.send_signal(signal.SIGINT)
        code = up.wait(60)
        assert code == 0, f"exit code {code}\n{log.read_text(errors='replace')[-3000:]}"
        _gone, alive = psutil.wait_procs(children, timeout=20)
        assert alive == [], f"left running: {[p.cmdline() for p in alive]}"
        output = log.read_text()
        assert f"{base_url}/metrics" in output, output
        assert "worker ready" in output, output
        assert (tmp_path / "data" / "sim" / "customers.csv").exists()
        with sqlite3.connect(tmp_path / "data" / "cases.sqlite3") as store:
            (customers,) = store.execute("SELECT count(*) FROM customers").fetchone()
        assert customers > 0, "routing needs the customers in the case store"
    finally:
        if up.poll() is None:
            # Its children too: a failed test must not leave a worker and broker running.
            leftover = psutil.Process(up.pid).children(recursive=True)
            up.kill()
            up.wait()
            for child in leftover:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
