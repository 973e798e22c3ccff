"""The server's refusals as typed errors: status to class, body fields kept, pickling."""

from __future__ import annotations

import pickle

import pytest

from tether.client.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionFailedError,
    GoneError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RequestTooLargeError,
    ServerError,
    UnprocessableEntityError,
    error_for,
)
from tether.errors import TetherError


@pytest.mark.parametrize(("status", "cls"), [
    (400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError),
    (404, NotFoundError), (409, ConflictError), (410, GoneError), (413, RequestTooLargeError),
    (422, UnprocessableEntityError),
    (500, InternalServerError), (503, InternalServerError), (418, ServerError)])
def test_each_status_has_its_type(status: int, cls: type[ServerError]) -> None:
    """error_for picks the class by status and keeps type, message and param."""
    error = error_for(status, {"error": {"type": "t", "message": "m", "param": "p"}})
    assert type(error) is cls and isinstance(error, TetherError)
    assert (error.status, error.type, error.message, error.param) == (status, "t", "m", "p")


def test_a_body_not_in_the_shape_keeps_the_status_and_text() -> None:
    """A proxy's page becomes the message; the status still picks the class."""
    error = error_for(502, None, "<h1>Bad Gateway</h1>")
    assert isinstance(error, InternalServerError) and "Bad Gateway" in error.message


def test_errors_survive_pickling() -> None:
    """ServerError and ConnectionFailedError round-trip with their fields (for process pools)."""
    error = pickle.loads(pickle.dumps(ConflictError(409, "SessionConflict", "moved", "revision")))
    assert type(error) is ConflictError and error.param == "revision" and error.message == "moved"
    lost = pickle.loads(pickle.dumps(ConnectionFailedError("gone", run_id="r", last_id=4)))
    assert (lost.run_id, lost.last_id, str(lost)) == ("r", 4, "gone")


@pytest.mark.parametrize(("old", "new"), [
    ("NotFound", NotFoundError), ("Conflict", ConflictError), ("Unauthorized", AuthenticationError),
    ("Forbidden", PermissionDeniedError), ("ServerFailure", InternalServerError),
    ("ConnectionFailed", ConnectionFailedError), ("Unprocessable", UnprocessableEntityError)])
def test_an_old_error_name_still_imports_with_a_deprecation_warning(old: str,
                                                                    new: type[Exception]) -> None:
    """Code written against the names before the SDK-style ones keeps working, warned, from
    the package and from its errors module; the old name is the new class, not a second one."""
    import tether.client
    import tether.client.errors

    for module in (tether.client, tether.client.errors):
        with pytest.warns(DeprecationWarning, match=f"{old} is now .*{new.__name__}"):
            assert getattr(module, old) is new
        assert old not in module.__all__ and old not in dir(module)
    with pytest.warns(DeprecationWarning, match="ResourceView"):
        assert tether.client.Resource is tether.client.ResourceView
    with pytest.raises(AttributeError, match="Nope"):
        tether.client.Nope  # noqa: B018
