"""The gateway: a request routed by its face to a service operation, the scenario's faults
carried out at the wire (status, 401, dropped connections before and after the write, latency
on the virtual clock, drift), every call recorded as a ServiceCall, and the in-process httpx
transport raising what httpx raises on a real network."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tether.sim import Environment, scenario_from_dict
from tether.sim.episode import environment_for
from tether.sim.services.errors import ServiceError
from tether.sim.wire import Gateway, Route, WireRequest, WireResponse


class _Echo:
    """A minimal face over payments: POST /refund {charge} → create_refund; GET /charge/ID."""

    service = "payments"

    def route(self, request: WireRequest, gateway: Gateway) -> Route | WireResponse:
        if request.method == "POST" and request.path == "/refund":
            body = request.json()
            kwargs: dict[str, Any] = {"charge": body["charge"]}
            if request.header("idempotency-key"):
                kwargs["idempotency_key"] = request.header("idempotency-key")
            return Route("create_refund", kwargs)
        if request.method == "GET" and request.path.startswith("/charge/"):
            return Route("get_charge", {"id": request.path.rsplit("/", 1)[1]})
        return WireResponse.of_json(404, {"error": "no route"})

    def success(self, route: Route, result: Any) -> WireResponse:
        return WireResponse.of_json(200, result)

    def failure(self, route: Route, error: ServiceError) -> WireResponse:
        return WireResponse.of_json(error.status, {"error": error.message})

    def injected(self, route: Route, status: int, retry_after_s: float | None) -> WireResponse:
        headers = {} if retry_after_s is None else {"retry-after": f"{retry_after_s:g}"}
        return WireResponse.of_json(status, {"error": "injected"}, headers)

    def expired(self, route: Route) -> WireResponse:
        return WireResponse.of_json(401, {"error": "expired"})


def _env(faults: list[dict[str, Any]] | None = None, seed: int = 0) -> Environment:
    scenario = scenario_from_dict({
        "name": "wire", "agent": "tests.sim.own_agents.credit:agent", "task": "t",
        "world": {"payments": {
            "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
            "charges": [{"id": "ch_1", "customer": "cus_1", "amount": 5_000}]}},
        "faults": faults or []})
    env = environment_for(scenario, seed)
    env.gateway.mount(_Echo())
    return env


def _client(env: Environment) -> httpx.Client:
    return httpx.Client(transport=env.http_transport(), base_url=env.base_url("payments"),
                        timeout=60.0)


def test_a_routed_request_reaches_the_service_and_is_recorded() -> None:
    """A POST becomes the service's operation: the ledger has the refund, the call is
    recorded with its target and key, and the answer is the plain JSON result."""
    env = _env()
    with _client(env) as http:
        answer = http.post("/refund", json={"charge": "ch_1"}, headers={"Idempotency-Key": "k"})
    assert answer.status_code == 200 and answer.json()["charge"] == "ch_1"
    assert [e.operation for e in env.world.ledger] == ["refund"]
    [call] = env.calls
    assert (call.target, call.keyed, call.effects) == ("payments.create_refund", True, (1,))
    assert env.clients_made


def test_a_refusal_is_the_faces_error_shape() -> None:
    """A ServiceError reaches the face's failure shape with the service's status."""
    env = _env()
    with _client(env) as http:
        answer = http.get("/charge/ch_404")
    assert answer.status_code == 404 and "ch_404" in answer.json()["error"]


@pytest.mark.parametrize(("fault", "status", "headers"), [
    ({"kind": "error", "status": 503}, 503, {}),
    ({"kind": "error", "status": 429, "retry_after_s": 2}, 429, {"retry-after": "2"}),
    ({"kind": "auth_expiry"}, 401, {}),
])
def test_injected_statuses_apply_nothing(fault: dict[str, Any], status: int,
                                         headers: dict[str, str]) -> None:
    """An injected error or expired credential answers in the face's shape and the service
    never sees the request."""
    env = _env([{**fault, "target": "payments.create_refund", "on_call": [1]}])
    with _client(env) as http:
        answer = http.post("/refund", json={"charge": "ch_1"})
        again = http.post("/refund", json={"charge": "ch_1"})
    assert answer.status_code == status
    for name, value in headers.items():
        assert answer.headers[name] == value
    assert again.status_code == 200
    assert len(env.world.ledger.of("payments", "refund")) == 1


def test_a_timeout_after_commit_drops_the_connection_after_the_write() -> None:
    """timeout_after: httpx raises ReadTimeout, and the refund is in the ledger."""
    env = _env([{"kind": "timeout_after", "target": "payments.create_refund"}])
    with _client(env) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/refund", json={"charge": "ch_1"})
    assert len(env.world.ledger.of("payments", "refund")) == 1
    assert env.calls[0].error.startswith("ConnectionDropped")


def test_a_timeout_before_delivery_applies_nothing() -> None:
    """timeout_before: httpx raises ConnectTimeout, and nothing was applied."""
    env = _env([{"kind": "timeout_before", "target": "payments.create_refund"}])
    with _client(env) as http, pytest.raises(httpx.ConnectTimeout):
        http.post("/refund", json={"charge": "ch_1"})
    assert len(env.world.ledger) == 0


def test_latency_advances_the_virtual_clock_and_drift_changes_the_body() -> None:
    """A latency fault is time on the world's clock (no wall time); schema drift renames a
    field of the JSON the client receives."""
    env = _env([{"kind": "latency", "target": "payments.get_charge", "latency_s": 30},
                {"kind": "schema_drift", "target": "payments.get_charge",
                 "rename": {"amount": "amount_cents"}}])
    before = env.clock.now()
    with httpx.Client(transport=env.http_transport(), base_url=env.base_url("payments"),
                      timeout=60.0) as http:
        body = http.get("/charge/ch_1").json()
    assert env.clock.now() - before == 30
    assert "amount" not in body and body["amount_cents"] == 5_000


def test_async_clients_wait_on_the_clock_and_hold_the_key_in_flight() -> None:
    """With an async client a delayed keyed request holds its key: a concurrent request with
    the same key meets the service's 409 while the first completes."""
    env = _env([{"kind": "latency", "target": "payments.create_refund", "latency_s": 5,
                 "on_call": [1]}])

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=env.http_transport(),
                                     base_url=env.base_url("payments")) as http:
            first = asyncio.ensure_future(http.post(
                "/refund", json={"charge": "ch_1"}, headers={"Idempotency-Key": "k"}))
            await asyncio.sleep(0)
            second = await http.post("/refund", json={"charge": "ch_1"},
                                     headers={"Idempotency-Key": "k"})
            return [await first, second]

    first, second = asyncio.run(both())
    assert first.status_code == 200 and second.status_code == 409
    assert len(env.world.ledger.of("payments", "refund")) == 1


def test_an_unknown_service_is_a_404_naming_the_services() -> None:
    """A path whose first segment is no service answers 404 listing the services."""
    env = _env()
    with httpx.Client(transport=env.http_transport()) as http:
        answer = http.get(env.gateway.root + "/nowhere/v1/x")
    assert answer.status_code == 404 and "payments" in answer.json()["error"]["message"]


def test_the_same_seed_gives_the_same_bytes() -> None:
    """Two environments of one scenario and seed answer the same requests with the same
    bytes and the same ledger digest."""
    faults = [{"kind": "latency", "target": "payments.*", "latency_range_s": [1, 9]},
              {"kind": "error", "target": "payments.create_refund", "probability": 0.5}]

    def trace(seed: int) -> tuple[list[bytes], str]:
        env = _env(faults, seed)
        with _client(env) as http:
            bodies = [http.post("/refund", json={"charge": "ch_1"},
                                headers={"Idempotency-Key": f"k{i}"}).content
                      for i in range(4)]
        bodies.append(json.dumps(env.clock.now()).encode())
        return bodies, env.world.ledger.digest()

    assert trace(3) == trace(3)


def test_a_delay_beyond_the_clients_read_timeout_is_a_read_timeout_on_the_clock() -> None:
    """A latency fault longer than the client's read timeout: a synchronous client gives up
    after its timeout of virtual time (not the fault's), with httpx's ReadTimeout, and the
    service never saw the call; a second call without the fault goes through."""
    env = _env([{"kind": "latency", "target": "payments.create_refund", "latency_s": 3000,
                 "on_call": [1]}])
    before = env.clock.now()
    with httpx.Client(transport=env.http_transport(), base_url=env.base_url("payments"),
                      timeout=httpx.Timeout(5.0, read=30.0)) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.post("/refund", json={"charge": "ch_1"})
        assert env.clock.now() - before == 30
        assert len(env.world.ledger) == 0
        assert http.post("/refund", json={"charge": "ch_1"}).status_code == 200
    assert env.calls[0].error.startswith("ConnectionDropped")


def test_an_async_client_gives_up_at_its_read_timeout_too() -> None:
    """The same with an async client: it waits its read timeout on the clock, then
    ReadTimeout; nothing applied."""
    env = _env([{"kind": "latency", "target": "payments.create_refund", "latency_s": 3000}])

    async def go() -> float:
        async with httpx.AsyncClient(transport=env.http_transport(),
                                     base_url=env.base_url("payments"),
                                     timeout=httpx.Timeout(12.0)) as http:
            start = env.clock.now()
            with pytest.raises(httpx.ReadTimeout):
                await http.post("/refund", json={"charge": "ch_1"})
            return env.clock.now() - start

    assert asyncio.run(go()) == 12
    assert len(env.world.ledger) == 0


def test_a_path_without_a_service_names_where_the_services_are() -> None:
    """A client pointed at the world's root instead of a service's base URL (the stripe SDK
    sending /v1/charges) gets a 404 naming the services and the base URL to use."""
    from tether.sim.wire.transport import httpx_client

    env = _env([])
    with httpx_client(Gateway(env), asynchronous=False) as http:
        answer = http.get("/v1/charges")
    assert answer.status_code == 404
    message = answer.json()["error"]["message"]
    assert "no simulated service 'v1'" in message and "http://sim.tether/payments" in message


def test_one_uuid_key_is_one_key_over_every_channel() -> None:
    """A UUID-shaped key is named by the gateway (uuid_0001 …) whichever face carried it, so
    the same key sent over Stripe's HTTP face and then over MCP is one key to the service:
    the second refund is a replay, not a second refund."""
    import uuid

    from tether.sim.wire.mcp_face import _invoke  # the MCP tool call, without a client

    env = _env()
    env.gateway.mount(_load_face_for_test("payments"))
    key = str(uuid.UUID(int=7))
    with httpx.Client(transport=env.http_transport(), base_url=env.base_url("payments"),
                      headers={"Authorization": "Bearer sk_test_x"}) as http:
        answer = http.post("/v1/refunds", data={"charge": "ch_1", "amount": "100"},
                           headers={"Idempotency-Key": key})
    assert answer.status_code == 200, answer.text
    asyncio.run(_invoke(env, "payments", "create_refund",
                        {"charge": "ch_1", "amount": 100, "idempotency_key": key}, False))
    refunds = env.world.ledger.of("payments", "refund")
    assert len(refunds) == 1 and refunds[0].data["idempotency_key"] == "uuid_0001"
    assert env.gateway.key_name("uuid_0001") == "uuid_uuid_0001"


def _load_face_for_test(service: str) -> Any:
    from tether.sim.wire.stripe_face import StripeFace

    return StripeFace(service)
