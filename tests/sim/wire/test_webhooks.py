"""Webhooks of the payments service in-process: events made from the ledger's payments effects,
endpoints registered over the Stripe-compatible API with secrets drawn from the seed, deliveries
signed as Stripe signs them (verified by the official SDK), retried, and the duplicate and
out-of-order faults of the target payments.webhook."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import UsageError
from tether.sim import Environment, scenario_from_dict
from tether.sim.episode import environment_for

KEY = "sk_test_hooks"
AUTH = {"Authorization": f"Bearer {KEY}"}
URL = "https://agent.example/stripe/hooks"


def _env(faults: list[dict[str, Any]] | None = None, seed: int = 0) -> Environment:
    return environment_for(scenario_from_dict({
        "name": "hooks", "agent": "tests.sim.own_agents.credit:agent", "task": "t",
        "world": {"payments": {
            "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
            "charges": [{"id": "ch_1", "customer": "cus_1", "amount": 5000}]}},
        "faults": faults or []}), seed)


def _http(env: Environment) -> httpx.Client:
    return httpx.Client(transport=env.http_transport(), base_url=env.base_url("payments"),
                        headers=AUTH)


class Inbox:
    """An agent's webhook handler: verifies each delivery with the SDK, answers ``statuses``
    in turn (then 200)."""

    def __init__(self, secret: str = "", statuses: list[int] | None = None) -> None:
        self.secret, self.statuses = secret, list(statuses or [])
        self.events: list[stripe.Event] = []

    def __call__(self, body: bytes, headers: dict[str, str]) -> int:
        event = stripe.Webhook.construct_event(body, headers["stripe-signature"], self.secret,
                                               tolerance=0)
        self.events.append(event)
        return self.statuses.pop(0) if self.statuses else 200

    @property
    def seen(self) -> list[tuple[str, str]]:
        return [(e.id, e.type) for e in self.events]


def _endpoint(http: httpx.Client, events: str | list[str] = "*", url: str = URL) -> str:
    answer = http.post("/v1/webhook_endpoints", data={"url": url, "enabled_events[]": events})
    assert answer.status_code == 200, answer.text
    secret: str = answer.json()["secret"]
    return secret


def _refund(http: httpx.Client, amount: int = 1000) -> None:
    assert http.post("/v1/refunds", data={"charge": "ch_1", "amount": amount}).status_code == 200


def test_a_refund_is_delivered_as_signed_events_the_sdk_verifies() -> None:
    """A refund makes refund.created and charge.refunded, delivered in order to the handler;
    the official SDK verifies the signature with the endpoint's secret."""
    env = _env()
    with _http(env) as http:
        inbox = Inbox(_endpoint(http))
        env.webhooks.receive(URL, inbox)
        _refund(http)
    assert inbox.seen == [("evt_0001", "refund.created"), ("evt_0002", "charge.refunded")]
    created, refunded = inbox.events
    assert created.data.object["id"] == "re_0001" and created.livemode is False
    assert refunded.data.object["amount_refunded"] == 1000
    assert (created.object, created.pending_webhooks, created.created) == \
        ("event", 1, int(env.clock.now()))


def test_the_sdk_refuses_a_wrong_secret_and_checks_time_only_when_asked() -> None:
    """A delivery verified with another secret fails; the default tolerance (300 s of the real
    clock) refuses the world's virtual timestamp, which is why receivers pass tolerance=0."""
    env = _env()
    got: list[tuple[bytes, dict[str, str]]] = []
    with _http(env) as http:
        secret = _endpoint(http)
        env.webhooks.receive(URL, lambda body, headers: got.append((body, headers)))
        _refund(http)
    body, headers = got[0]
    with pytest.raises(stripe.SignatureVerificationError, match="No signatures found"):
        stripe.Webhook.construct_event(body, headers["stripe-signature"], "whsec_other",
                                       tolerance=0)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(body, headers["stripe-signature"], secret)


def test_every_payments_effect_becomes_its_stripe_event() -> None:
    """Customers, charges and payouts made over the API become customer.created,
    charge.succeeded and payout.created events, listed newest first at /v1/events."""
    env = _env()
    with _http(env) as http:
        assert http.post("/v1/customers", data={"email": "bo@example.com"}).status_code == 200
        assert http.post("/v1/charges", data={"amount": 700, "currency": "usd"}
                         ).status_code == 200
        assert http.post("/v1/payouts", data={"amount": 100, "currency": "usd"}
                         ).status_code == 200
        listed = http.get("/v1/events").json()
    assert [e["type"] for e in listed["data"]] == \
        ["payout.created", "charge.succeeded", "customer.created"]
    assert listed["object"] == "list" and listed["has_more"] is False
    assert all(e["pending_webhooks"] == 0 for e in listed["data"])  # no endpoint yet


def test_events_page_and_unknown_ones_are_stripe_404s() -> None:
    """/v1/events pages with limit and starting_after and filters by type (wildcards as
    Stripe's: charge.*); an unknown event id is resource_missing."""
    env = _env()
    with _http(env) as http:
        for _ in range(3):
            _refund(http, 100)
        first = http.get("/v1/events", params={"limit": 2}).json()
        rest = http.get("/v1/events", params={"limit": 5,
                                              "starting_after": first["data"][-1]["id"]}).json()
        charges = http.get("/v1/events", params={"type": "charge.*"}).json()["data"]
        missing = http.get("/v1/events/evt_9999")
        one = http.get("/v1/events/evt_0001").json()
    assert [e["id"] for e in first["data"]] == ["evt_0006", "evt_0005"] and first["has_more"]
    assert [e["id"] for e in rest["data"]] == ["evt_0004", "evt_0003", "evt_0002", "evt_0001"]
    assert {e["type"] for e in charges} == {"charge.refunded"} and len(charges) == 3
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_missing"
    assert one["type"] == "refund.created"



def test_events_filter_by_types_and_created_and_refuse_what_they_cannot() -> None:
    """The SDK's events.list filters by types[] (exact names) and created (a time or
    gt/gte/lt/lte) as Stripe's does; a filter the simulation does not model is a 400
    parameter_unknown naming it, never ignored (which would hand back every event)."""
    env = _env()
    client = stripe.StripeClient(KEY, http_client=env.stripe_http_client(),
                                 base_addresses={"api": env.base_url("payments")})
    client.v1.customers.create(params={"email": "bo@example.com"})
    env.clock.advance(60)
    client.v1.refunds.create(params={"charge": "ch_1", "amount": 300})
    later = int(env.clock.now())

    def types(params: Any) -> list[str]:
        return [e.type for e in client.v1.events.list(params=params).auto_paging_iter()]

    assert types({"types": ["refund.created", "customer.created"]}) == [
        "refund.created", "customer.created"]
    assert types({"created": {"gte": later}}) == ["charge.refunded", "refund.created"]
    assert types({"created": later - 60}) == ["customer.created"]
    assert types({"created": {"lt": later}, "types": ["charge.refunded"]}) == []
    for params, param in (({"delivery_success": False}, "delivery_success"),
                          ({"created": {"after": 1}}, "created"),
                          ({"type": "charge.*", "types": ["refund.created"]}, "types")):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.events.list(params=params)
        assert refused.value.param == param, params


def test_endpoints_are_listed_retrieved_deleted_and_validated() -> None:
    """The endpoint API answers like Stripe's: the secret only on creation, 400 with the param
    for a missing url or an event type the world never sends, 401 without a key; a deleted
    endpoint gets nothing more."""
    env = _env()
    inbox = Inbox()
    env.webhooks.receive(URL, inbox)
    with _http(env) as http:
        inbox.secret = _endpoint(http, ["refund.created"])
        answered = http.get("/v1/webhook_endpoints")
        assert answered.headers["request-id"].startswith("req_")
        listed = answered.json()["data"]
        assert [e["url"] for e in listed] == [URL] and "secret" not in listed[0]
        ident = listed[0]["id"]
        assert http.get(f"/v1/webhook_endpoints/{ident}").json()["enabled_events"] == \
            ["refund.created"]
        no_url = http.post("/v1/webhook_endpoints", data={"enabled_events[]": "*"})
        bad_event = http.post("/v1/webhook_endpoints",
                              data={"url": URL, "enabled_events[]": "charge.exploded"})
        anonymous = http.get("/v1/webhook_endpoints", headers={"Authorization": ""})
        _refund(http)
        deleted = http.delete(f"/v1/webhook_endpoints/{ident}").json()
        _refund(http)
    assert (no_url.status_code, no_url.json()["error"]["param"]) == (400, "url")
    assert (bad_event.status_code, bad_event.json()["error"]["param"]) == (400, "enabled_events")
    assert anonymous.status_code == 401
    assert deleted == {"id": ident, "object": "webhook_endpoint", "deleted": True}
    assert inbox.seen == [("evt_0001", "refund.created")]  # only enabled events, until deleted


def test_endpoint_parameters_are_applied_or_refused_never_ignored() -> None:
    """Through the SDK, an update's metadata merges (an empty value unsets a key) and disabled
    takes booleans; a parameter the simulation does not model (connect) is a 400 naming it,
    and a refused update changes nothing."""
    env = _env()
    client = stripe.StripeClient(KEY, http_client=env.stripe_http_client(),
                                 base_addresses={"api": env.base_url("payments")})
    made = client.v1.webhook_endpoints.create(params={
        "url": URL, "enabled_events": ["*"], "metadata": {"team": "ops", "tier": "1"}})
    updated = client.v1.webhook_endpoints.update(made.id, params={
        "metadata": {"tier": "", "owner": "ann"}, "disabled": True})
    assert updated.metadata.to_dict() == {"team": "ops", "owner": "ann"}
    assert updated.status == "disabled"
    for call, param in ((lambda: client.v1.webhook_endpoints.create(params={
                            "url": URL, "enabled_events": ["*"], "connect": True}), "connect"),
                        (lambda: client.v1.webhook_endpoints.update(made.id, params={
                            "url": "https://elsewhere.example/x",
                            "enabled_events": ["charge.exploded"]}), "enabled_events")):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            call()
        assert refused.value.param == param
    assert client.v1.webhook_endpoints.retrieve(made.id).url == URL
    assert [e.id for e in client.v1.webhook_endpoints.list()] == [made.id]


def test_secrets_are_drawn_from_the_seed() -> None:
    """The same seed hands out the same secrets; another seed others."""
    secrets = []
    for seed in (4, 4, 5):
        with _http(_env(seed=seed)) as http:
            secrets.append(_endpoint(http))
    assert secrets[0] == secrets[1] != secrets[2]
    assert secrets[0].startswith("whsec_")


def test_duplicate_delivery_sends_the_same_event_twice() -> None:
    """duplicate_delivery on payments.webhook delivers one event id twice."""
    env = _env([{"kind": "duplicate_delivery", "target": "payments.webhook", "on_call": [2]}])
    with _http(env) as http:
        inbox = Inbox(_endpoint(http))
        env.webhooks.receive(URL, inbox)
        _refund(http)
    assert inbox.seen == [("evt_0001", "refund.created"), ("evt_0002", "charge.refunded"),
                          ("evt_0002", "charge.refunded")]
    assert [f.kind for f in env.layer.firings] == ["duplicate_delivery"]


def test_out_of_order_holds_an_event_until_the_next_one() -> None:
    """out_of_order holds refund.created back until charge.refunded was delivered; one held
    with nothing after it waits for flush()."""
    env = _env([{"kind": "out_of_order", "target": "payments.webhook", "on_call": [1, 4]}])
    with _http(env) as http:
        inbox = Inbox(_endpoint(http))
        env.webhooks.receive(URL, inbox)
        _refund(http)
        _refund(http)
    assert inbox.seen == [("evt_0002", "charge.refunded"), ("evt_0001", "refund.created"),
                          ("evt_0003", "refund.created")]
    assert env.webhooks.pending() == 1
    env.webhooks.flush()
    assert inbox.seen[-1] == ("evt_0004", "charge.refunded") and env.webhooks.pending() == 0


def test_a_failed_delivery_is_retried_on_the_next_round_then_given_up() -> None:
    """A non-2xx answer is retried after the next request; after max_attempts it is failed.
    The event's pending_webhooks counts the endpoints still waiting, down to 0."""
    env = _env()
    with _http(env) as http:
        inbox = Inbox(_endpoint(http, ["refund.created"]), statuses=[500, 503, 500, 500, 500])
        env.webhooks.receive(URL, inbox)
        _refund(http)                      # evt_0001: 500
        http.get("/v1/charges/ch_1")       # retry: 503
        _refund(http)                      # retry: 500 → failed; evt_0003: 500
        http.get("/v1/charges/ch_1")       # evt_0003 retry: 500
        waiting = http.get("/v1/events/evt_0003").json()["pending_webhooks"]
        http.get("/v1/charges/ch_1")       # evt_0003 retry: 200
        done = http.get("/v1/events/evt_0003").json()["pending_webhooks"]
    assert (waiting, done) == (1, 0)  # Stripe's count goes down once delivered
    assert inbox.events[-1].pending_webhooks == 1  # as sent: not yet delivered then
    outcomes = [(a.event, a.attempt, a.status, a.outcome) for a in env.webhooks.attempts]
    assert outcomes == [
        ("evt_0001", 1, 500, "retrying"), ("evt_0001", 2, 503, "retrying"),
        ("evt_0001", 3, 500, "failed"), ("evt_0003", 1, 500, "retrying"),
        ("evt_0003", 2, 500, "retrying"), ("evt_0003", 3, 200, "delivered")]


def test_a_url_nothing_receives_in_process_fails_with_the_fix() -> None:
    """In-process, an endpoint whose URL has no receiver cannot be reached: each attempt fails
    with a message naming env.webhooks.receive, never a silent success."""
    env = _env()
    with _http(env) as http:
        _endpoint(http, ["refund.created"])
        _refund(http)
    [attempt] = env.webhooks.attempts
    assert attempt.status is None and attempt.outcome == "retrying"
    assert "env.webhooks.receive" in attempt.error



def test_deliveries_over_http_pass_the_sdks_default_time_check() -> None:
    """Over HTTP the receiver is another process checking the signature's time against its own
    real clock: the SDK's construct_event with its default tolerance (300 s) accepts it."""
    import asyncio

    env = _env()
    env.webhooks.over_http = True
    sent: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    with _http(env) as http:
        secret = _endpoint(http, ["refund.created"], url="http://127.0.0.1:9/hooks")
        _refund(http)

    async def deliver() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as client:
            await env.webhooks.deliver_over_http(client)

    asyncio.run(deliver())
    [request] = sent
    event = stripe.Webhook.construct_event(request.content, request.headers["stripe-signature"],
                                           secret)
    assert event.type == "refund.created"
    assert [a.at for a in env.webhooks.attempts] == [env.world.now()]  # the record: virtual


def test_in_process_deliveries_may_be_stamped_with_the_real_time() -> None:
    """A handler that verifies with the SDK's defaults runs unchanged in-process once the
    deliveries are stamped with the real clock; the attempts are still recorded at the
    virtual time."""
    from tether import SystemClock

    env = _env()
    env.webhooks.signing_clock = SystemClock()
    events: list[stripe.Event] = []
    with _http(env) as http:
        secret = _endpoint(http, ["refund.created"])
        env.webhooks.receive(URL, lambda body, headers: events.append(
            stripe.Webhook.construct_event(body, headers["stripe-signature"], secret)))
        _refund(http)
    assert [e.type for e in events] == ["refund.created"]
    assert [(a.outcome, a.at) for a in env.webhooks.attempts] == [
        ("delivered", env.world.now())]


def test_a_wsgi_app_receives_through_an_httpx_transport() -> None:
    """A receiver may be an httpx transport: a WSGI app gets the POST with its signature."""
    env = _env()
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        seen.append(json.loads(body)["type"])
        assert environ["HTTP_STRIPE_SIGNATURE"].startswith("t=")
        start_response("204 No Content", [])
        return [b""]

    with _http(env) as http:
        _endpoint(http)
        env.webhooks.receive(URL, httpx.WSGITransport(app=app))
        _refund(http)
    assert seen == ["refund.created", "charge.refunded"]
    assert [a.status for a in env.webhooks.attempts] == [204, 204]


def test_a_handler_may_call_the_world_back() -> None:
    """A handler that reads the charge over the API while it is delivered does not recurse
    into another delivery round; its events still arrive."""
    env = _env()
    with _http(env) as http:
        inbox = Inbox(_endpoint(http))

        def handler(body: bytes, headers: dict[str, str]) -> int:
            assert http.get("/v1/charges/ch_1").status_code == 200
            return inbox(body, headers)

        env.webhooks.receive(URL, handler)
        _refund(http)
    assert inbox.seen == [("evt_0001", "refund.created"), ("evt_0002", "charge.refunded")]


def test_the_stripe_sdk_registers_endpoints_in_process() -> None:
    """The official SDK on tether's in-process client creates an endpoint and lists events."""
    env = _env()
    client = stripe.StripeClient(KEY, http_client=env.stripe_http_client(),
                                 base_addresses={"api": env.base_url("payments")})
    endpoint = client.v1.webhook_endpoints.create(params={"url": URL,
                                                          "enabled_events": ["*"]})
    assert endpoint.secret is not None
    inbox = Inbox(endpoint.secret)
    env.webhooks.receive(URL, inbox)
    client.v1.refunds.create(params={"charge": "ch_1", "amount": 300})
    assert [e.type for e in client.v1.events.list().data] == \
        ["charge.refunded", "refund.created"]
    assert len(inbox.events) == 2



def test_events_name_random_keys_as_the_ledger_does_so_runs_repeat() -> None:
    """The SDK's random idempotency keys appear in events under the ledger's stable names
    (uuid_0001), and a key sent as uuid_0001 under its own distinct name, so two runs of one
    seed through the SDK deliver the same bytes and no two keys look alike."""
    def run() -> tuple[list[bytes], list[str]]:
        env = _env()
        client = stripe.StripeClient(KEY, http_client=env.stripe_http_client(),
                                     base_addresses={"api": env.base_url("payments")})
        endpoint = client.v1.webhook_endpoints.create(params={
            "url": URL, "enabled_events": ["refund.created"]})
        bodies: list[bytes] = []
        env.webhooks.receive(URL, lambda body, headers: bodies.append(body))
        client.v1.refunds.create(params={"charge": "ch_1", "amount": 300})
        client.v1.refunds.create(params={"charge": "ch_1", "amount": 300},
                                 options={"idempotency_key": "uuid_0001"})
        assert endpoint.secret
        return bodies, [json.loads(b)["request"]["idempotency_key"] for b in bodies]

    first, second = run(), run()
    assert first == second and first[1] == ["uuid_0001", "uuid_uuid_0001"]


def test_deliveries_are_the_same_for_the_same_seed_and_requests() -> None:
    """Two worlds of one seed given the same requests deliver identical bytes and record
    identical attempts."""
    digests = []
    for _ in range(2):
        env = _env([{"kind": "duplicate_delivery", "target": "payments.webhook",
                     "probability": 0.5}], seed=11)
        bodies: list[bytes] = []

        def keep(body: bytes, headers: dict[str, str], into: list[bytes] = bodies) -> None:
            into.append(body + headers["stripe-signature"].encode())

        with _http(env) as http:
            _endpoint(http)
            env.webhooks.receive(URL, keep)
            for _ in range(4):
                _refund(http, 100)
        record = b"".join(bodies) + json.dumps(
            [a.as_data() for a in env.webhooks.attempts]).encode()
        digests.append(hashlib.sha256(record).hexdigest())
    assert digests[0] == digests[1]


@pytest.mark.parametrize(("kind", "target", "accepted"), [
    ("out_of_order", "payments.webhook", True),
    ("duplicate_delivery", "payments.webhook", True),
    ("out_of_order", "payments.create_refund", False),
    ("error", "payments.webhook", False),
    ("timeout_after", "payments.*", True),
])
def test_webhook_faults_are_validated_at_load(kind: str, target: str, accepted: bool) -> None:
    """payments.webhook takes only duplicate_delivery and out_of_order, and out_of_order goes
    nowhere else: a fault that could never fire is refused when the scenario loads."""
    data = {"name": "hooks", "agent": "tests.sim.own_agents.credit:agent", "task": "t",
            "faults": [{"kind": kind, "target": target}]}
    if accepted:
        scenario_from_dict(data)
    else:
        with pytest.raises(UsageError, match=r"payments\.webhook takes only"):
            scenario_from_dict(data)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(min_value=0, max_value=12), limit=st.integers(min_value=1, max_value=5))
def test_walking_the_event_pages_sees_each_event_once(n: int, limit: int) -> None:
    """Paging /v1/events with starting_after visits every event once, newest first, and
    paging back with ending_before visits them again in the same order."""
    env = _env()
    with _http(env) as http:
        for _ in range(n):
            _refund(http, 1)
        forward: list[str] = []
        params: dict[str, Any] = {"limit": limit}
        while True:
            page = http.get("/v1/events", params=params).json()
            forward += [e["id"] for e in page["data"]]
            if not page["has_more"]:
                break
            params = {"limit": limit, "starting_after": forward[-1]}
        backward: list[str] = []
        if forward:
            params = {"limit": limit, "ending_before": forward[-1]}
            while True:
                page = http.get("/v1/events", params=params).json()
                backward = [e["id"] for e in page["data"]] + backward
                if not page["has_more"]:
                    break
                params = {"limit": limit, "ending_before": backward[0]}
    assert forward == [f"evt_{i:04d}" for i in range(2 * n, 0, -1)]
    assert backward + forward[-1:] == forward
