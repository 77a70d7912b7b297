from __future__ import annotations

import socket

import pytest

import stream.broker
from core.errors import Unavailable
from stream.broker import EmbeddedBroker


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_embedded_broker_starts_on_a_free_port_and_stops_cleanly() -> None:
    with EmbeddedBroker() as broker:
        assert broker.running
        assert accepts(broker.port)
        assert broker.url == f"kafka://127.0.0.1:{broker.port}"
    assert not broker.running
    assert not accepts(broker.port)


def test_a_taken_port_is_reported_not_silently_shared() -> None:
    with EmbeddedBroker() as first, pytest.raises(Unavailable, match=str(first.port)):
        EmbeddedBroker(first.port).start()


class KernelHandingOut:
    """Stands in for the socket ``free_loopback_port`` binds: the kernel's picks, in order."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports

    def __call__(self, *_args: object) -> KernelHandingOut:
        return self

    def __enter__(self) -> KernelHandingOut:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        pass

    def bind(self, _address: tuple[str, int]) -> None:
        pass

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.ports.pop(0))


def test_a_picked_port_is_never_one_promised_to_another_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The kernel hands a closed port out again; `up` once gave the broker the port it had
    # just promised to the worker's web server, and the worker could not bind it.
    kernel = KernelHandingOut([40767, 40767, 41001])
    monkeypatch.setattr(stream.broker.socket, "socket", kernel)
    assert stream.broker.free_loopback_port(avoid={40767}) == 41001
    assert kernel.ports == []


def test_a_broker_on_port_zero_stays_off_the_ports_it_is_told_to_avoid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream.broker.socket, "socket", KernelHandingOut([46045, 40767]))
    assert EmbeddedBroker(avoid_ports={46045}).port == 40767
