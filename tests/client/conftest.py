"""The fake tether server every client test talks to (one uvicorn per test module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.fake_server import Fake, serving


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Fake]]:
    """A fake server's base URL and its state."""
    fake = Fake()
    with serving(fake) as url:
        yield url, fake
