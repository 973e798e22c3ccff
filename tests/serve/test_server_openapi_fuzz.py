"""The API fuzzed from its OpenAPI document (schemathesis, in process): no request gets a
500, every refusal has the error shape, and every answer is one the document describes."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tether.serve.app import OPENAPI, create_app
from tether.serve.server import Server
from tether.sessions.loader import load_definition
from tether.store.sqlite import SQLiteStore

from .serve_helpers import EXAMPLE, KEYS, ring

# Tools are never reached here (no session of a fuzzed id exists), so no world is built.
_SERVER = Server(SQLiteStore(Path(tempfile.mkdtemp(prefix="serve-fuzz-")) / "runs.db"),
                 [load_definition(EXAMPLE / "agent.yaml")], ring(), poll_s=0.05)
SCHEMA = schemathesis.openapi.from_dict(OPENAPI)
SCHEMA.app = create_app(_SERVER)


@SCHEMA.auth()
class _Key:
    """A tenant's customer key (schemathesis also tries the calls without it)."""

    def get(self, case: Any, context: Any) -> str:
        return KEYS["ada"][0]

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@SCHEMA.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_only_documented_answers(case: Any) -> None:
    """Generated requests (valid and not) never get a 500; refusals carry {"error": {type,
    message}}; statuses and bodies match the document."""
    response = case.call()
    assert response.status_code < 500, response.text
    if response.status_code >= 400 and response.status_code != 405:
        error = json.loads(response.content)["error"]
        assert isinstance(error["type"], str) and error["message"], response.text
    # Valid data may name a session or run that does not exist (404): not a refusal of it.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])


def test_the_document_is_valid_openapi() -> None:
    """The hand-written document passes the OpenAPI 3.1 meta-schema."""
    SCHEMA.validate()
