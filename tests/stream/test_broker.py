from __future__ import annotations

import socket

import pytest

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
