"""A cloud API that accepts connections but never answers fails a call within its timeout."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from providers.aws import AwsProvider
from providers.base import ProviderError
from providers.gcp import GcpProvider


@pytest.fixture
def silent_api() -> Iterator[str]:
    """Accepts every connection, reads what is sent, and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


def test_an_aws_call_gives_up_after_its_read_timeout(
    silent_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    provider = AwsProvider(
        {"region": "us-east-1", "endpoint_url": silent_api, "read_timeout": 1, "max_attempts": 2}
    )
    started = time.monotonic()

    with pytest.raises(ProviderError, match="describe instances"):
        provider.list_servers({"byoi:app": "web"})

    assert time.monotonic() - started < 6  # two attempts of 1 s, plus back-off


def test_a_gcp_call_gives_up_after_its_read_timeout(silent_api: str) -> None:
    provider = GcpProvider(
        {
            "project": "byoi-test",
            "api_endpoint": silent_api,
            "credentials": "anonymous",
            "read_timeout": 1,
        }
    )
    started = time.monotonic()

    with pytest.raises(ProviderError, match="find image"):
        provider.resolve_image("web-base-v1")

    assert time.monotonic() - started < 6
