"""The server's refusals as typed errors: status to class, body fields kept, pickling."""

from __future__ import annotations

import pickle

import pytest

from tether.client.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    Gone,
    NotFound,
    RequestTooLarge,
    ServerError,
    ServerFailure,
    Unauthorized,
    Unprocessable,
    error_for,
)
from tether.errors import TetherError


@pytest.mark.parametrize(("status", "cls"), [
    (400, BadRequest), (401, Unauthorized), (403, Forbidden), (404, NotFound),
    (409, Conflict), (410, Gone), (413, RequestTooLarge), (422, Unprocessable),
    (500, ServerFailure), (503, ServerFailure), (418, ServerError)])
def test_each_status_has_its_type(status: int, cls: type[ServerError]) -> None:
    """error_for picks the class by status and keeps type, message and param."""
    error = error_for(status, {"error": {"type": "t", "message": "m", "param": "p"}})
    assert type(error) is cls and isinstance(error, TetherError)
    assert (error.status, error.type, error.message, error.param) == (status, "t", "m", "p")


def test_a_body_not_in_the_shape_keeps_the_status_and_text() -> None:
    """A proxy's page becomes the message; the status still picks the class."""
    error = error_for(502, None, "<h1>Bad Gateway</h1>")
    assert isinstance(error, ServerFailure) and "Bad Gateway" in error.message


def test_errors_survive_pickling() -> None:
    """ServerError and ConnectionFailed round-trip with their fields (for process pools)."""
    error = pickle.loads(pickle.dumps(Conflict(409, "SessionConflict", "moved", "revision")))
    assert type(error) is Conflict and error.param == "revision" and error.message == "moved"
    lost = pickle.loads(pickle.dumps(ConnectionFailed("gone", run_id="r", last_id=4)))
    assert (lost.run_id, lost.last_id, str(lost)) == ("r", 4, "gone")
