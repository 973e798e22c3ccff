"""The Stripe-compatible face on the wire, seen by a plain HTTP client (httpx on the in-process
transport): keys, routing, parameters, list objects and pagination, error shapes, headers,
idempotency and the ledger."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from tether.sim.wire.openapi import openapi_document
from tether.sim.wire.stripe_face import DEFAULT_STRIPE_VERSION, WIRE_FIELDS, mask

from .stripe_world import KEY, effects, http, world


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    return error


# -- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Token sk_test_x", "Basic !!"])
def test_a_missing_key_is_a_401(authorization: str | None) -> None:
    """No usable key is Stripe's 401 asking for one, and nothing is called."""
    env = world()
    client = http(env)
    if authorization is None:
        del client.headers["Authorization"]
    else:
        client.headers["Authorization"] = authorization
    response = client.get("/v1/charges/ch_0001")
    assert response.status_code == 401
    assert "did not provide an API key" in error_of(response)["message"]
    assert env.calls == []


def test_a_bad_key_is_a_401_quoting_it_masked() -> None:
    """A key that is not a test secret key is 401 ``Invalid API Key provided`` with the key
    masked as Stripe masks it."""
    response = http(world()).get("/v1/charges/ch_0001",
                                 headers={"Authorization": "Bearer pk_test_abcdefghxyz1"})
    assert response.status_code == 401
    assert error_of(response) == {"type": "invalid_request_error",
                                  "message": "Invalid API Key provided: pk_test_********xyz1"}
    assert mask("sk_test_abc") == "sk_test_***"


def test_declared_api_keys_are_the_only_ones_accepted() -> None:
    """With ``api_keys`` in the payments seed, another sk_test key is refused; basic auth
    (``curl -u key:``) is read like bearer."""
    env = world(api_keys=["sk_test_only"])
    assert http(env).get("/v1/charges/ch_0001").status_code == 401
    basic = "Basic " + base64.b64encode(b"sk_test_only:").decode()
    assert http(env).get("/v1/charges/ch_0001",
                         headers={"Authorization": basic}).status_code == 200


# -- routing and parameters ----------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/nothing"), ("DELETE", "/v1/charges/ch_0001"), ("POST", "/v1/charges/ch_0001"),
    ("GET", "/v1/charges/"), ("GET", "/charges"),
])
def test_unknown_urls_are_stripe_404s(method: str, path: str) -> None:
    """Paths and methods the API does not have are 404 ``Unrecognized request URL``."""
    response = http(world()).request(method, path)
    assert response.status_code == 404
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"Unrecognized request URL ({method}: {path})")


@pytest.mark.parametrize(("data", "param", "code"), [
    ({"charge": "ch_0001", "colour": "red"}, "colour", "parameter_unknown"),
    ({"charge": "ch_0001", "amount": "12.5"}, "amount", "parameter_invalid_integer"),
    ({"charge": "ch_0001", "amount": "0"}, "amount", "parameter_invalid_integer"),
    ({"amount": "100"}, "charge", "parameter_missing"),
    ({"charge": ""}, "charge", "parameter_missing"),
    ({"charge": "ch_0001", "expand[]": "charge"}, "expand", None),
    ({"charge": "ch_0001", "metadata[a][b]": "c"}, "metadata", None),
    ({"charge[x]": "ch_0001"}, "charge", "parameter_invalid_string"),
    ({"charge": "ch_0001", "reason": "bored"}, "reason", None),
])
def test_parameter_errors_are_400s_naming_the_parameter(data: dict[str, str], param: str,
                                                        code: str | None) -> None:
    """Unknown, mistyped, missing and unsupported (expand) parameters are 400s naming the
    parameter; nothing is refunded."""
    env = world()
    response = http(env).post("/v1/refunds", data=data)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["param"], error.get("code")) == (param, code)
    assert effects(env, "refund") == []


def test_a_malformed_form_key_is_a_400_naming_it() -> None:
    """A key with unbalanced brackets is a 400 naming the key, not a guess."""
    response = http(world()).post("/v1/refunds", content=b"charge=ch_0001&metadata[a=1",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert "metadata[a" in error_of(response)["message"]


def test_a_json_body_is_refused_with_what_to_send() -> None:
    """Stripe's v1 API takes form bodies; JSON is a 400 saying so, never read as empty."""
    env = world()
    response = http(env).post("/v1/refunds", json={"charge": "ch_0001"})
    assert response.status_code == 400
    assert "application/x-www-form-urlencoded" in error_of(response)["message"]
    assert effects(env, "refund") == []


def test_nested_metadata_reaches_the_service() -> None:
    """``metadata[order]=1042`` arrives as metadata {"order": "1042"}."""
    env = world()
    refund = http(env).post("/v1/refunds", data={"charge": "ch_0001",
                                                 "metadata[order]": "1042"}).json()
    assert refund["metadata"] == {"order": "1042"}
    assert env.service("payments").get_refund(refund["id"]).metadata == {"order": "1042"}



def test_an_empty_metadata_value_sets_nothing() -> None:
    """``metadata[note]=`` is Stripe's "unset": the key is not stored, as the SDK's
    ``{"note": ""}`` and an empty ``metadata=`` store nothing."""
    env = world()
    client = http(env)
    refund = client.post("/v1/refunds", data={"charge": "ch_0001", "amount": "5",
                                              "metadata[note]": "", "metadata[order]": "7"})
    customer = client.post("/v1/customers", data={"email": "a@b.c", "metadata[note]": ""})
    assert refund.json()["metadata"] == {"order": "7"}
    assert customer.json()["metadata"] == {}
    assert env.service("payments").get_refund(refund.json()["id"]).metadata == {"order": "7"}


# -- objects, lists and pagination ---------------------------------------------------------


def test_objects_are_stripes_and_never_show_the_replay_flag() -> None:
    """Retrieved and created objects carry Stripe's fields; ``idempotent_replayed`` never
    appears in a body (it is a header)."""
    client = http(world())
    refund = client.post("/v1/refunds", data={"charge": "ch_0002"}).json()
    assert refund["object"] == "refund" and "idempotent_replayed" not in refund
    listed = client.get("/v1/refunds").json()["data"]
    assert listed == [client.get(f"/v1/refunds/{refund['id']}").json()]
    assert "idempotent_replayed" not in listed[0]


def test_list_objects_page_with_cursors() -> None:
    """Lists are Stripe list objects, newest first, paged by limit, starting_after and
    ending_before, with has_more and the list's url."""
    client = http(world())
    first = client.get("/v1/charges", params={"limit": 2}).json()
    assert first["object"] == "list" and first["url"] == "/v1/charges"
    assert [c["id"] for c in first["data"]] == ["ch_0003", "ch_0002"] and first["has_more"]
    rest = client.get("/v1/charges", params={"limit": 2, "starting_after": "ch_0002"}).json()
    assert [c["id"] for c in rest["data"]] == ["ch_0001"] and not rest["has_more"]
    back = client.get("/v1/charges", params={"limit": 1, "ending_before": "ch_0001"}).json()
    assert [c["id"] for c in back["data"]] == ["ch_0002"] and back["has_more"]
    assert client.get("/v1/charges").json()["has_more"] is False


@pytest.mark.parametrize(("params", "status", "param"), [
    ({"limit": "0"}, 400, "limit"), ({"limit": "101"}, 400, "limit"),
    ({"limit": "ten"}, 400, "limit"), ({"starting_after": "ch_9"}, 404, "starting_after"),
    ({"starting_after": "ch_0001", "ending_before": "ch_0003"}, 400, "ending_before"),
    ({"customer": "cus_9"}, 404, "customer"),
])
def test_bad_pages_are_errors_naming_the_parameter(params: dict[str, str], status: int,
                                                   param: str) -> None:
    """Out-of-range limits, unknown cursors, both cursors and unknown filters are refused."""
    response = http(world()).get("/v1/charges", params=params)
    assert response.status_code == status
    assert error_of(response)["param"] == param


def test_lists_filter_by_their_parent() -> None:
    """``/v1/charges?customer=`` and ``/v1/refunds?charge=`` list only that parent's."""
    client = http(world())
    client.post("/v1/refunds", data={"charge": "ch_0001", "amount": "5"})
    client.post("/v1/refunds", data={"charge": "ch_0003", "amount": "5"})
    charges = client.get("/v1/charges", params={"customer": "cus_0002"}).json()["data"]
    refunds = client.get("/v1/refunds", params={"charge": "ch_0003"}).json()["data"]
    assert [c["id"] for c in charges] == ["ch_0003"]
    assert [r["charge"] for r in refunds] == ["ch_0003"]


# -- headers and idempotency ---------------------------------------------------------------


def test_request_ids_count_and_the_version_is_echoed() -> None:
    """Request-Id is a counter (the same in every run), Stripe-Version the request's or the
    default, and errors carry both too."""
    client = http(world())
    ok = client.get("/v1/charges/ch_0001", headers={"Stripe-Version": "2024-06-20"})
    missing = client.get("/v1/charges/ch_9")
    assert (ok.headers["request-id"], ok.headers["stripe-version"]) == (
        "req_00000000000001", "2024-06-20")
    assert (missing.headers["request-id"], missing.headers["stripe-version"]) == (
        "req_00000000000002", DEFAULT_STRIPE_VERSION)


def test_a_repeated_key_replays_with_the_header() -> None:
    """The same Idempotency-Key and body replays the first response with
    ``Idempotent-Replayed: true`` and refunds once; other parameters are idempotency_error."""
    env = world()
    client = http(env)
    sent = {"charge": "ch_0001", "amount": "300"}
    first = client.post("/v1/refunds", data=sent, headers={"Idempotency-Key": "k1"})
    again = client.post("/v1/refunds", data=sent, headers={"Idempotency-Key": "k1"})
    other = client.post("/v1/refunds", data={**sent, "amount": "301"},
                        headers={"Idempotency-Key": "k1"})
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    assert again.headers["idempotency-key"] == "k1"
    assert other.status_code == 400 and error_of(other)["type"] == "idempotency_error"
    assert [e["idempotency_key"] for e in effects(env, "refund")] == ["k1"]


def test_a_key_in_flight_is_a_409_that_says_retry() -> None:
    """While the key is held, a request with it is 409 idempotency_key_in_use with
    ``Stripe-Should-Retry: true``; after, it runs."""
    env = world()
    client = http(env)
    with env.service("payments").in_flight("k1"):
        busy = client.post("/v1/refunds", data={"charge": "ch_0001"},
                           headers={"Idempotency-Key": "k1"})
    assert busy.status_code == 409 and busy.headers["stripe-should-retry"] == "true"
    assert error_of(busy)["code"] == "idempotency_key_in_use"
    assert client.post("/v1/refunds", data={"charge": "ch_0001"},
                       headers={"Idempotency-Key": "k1"}).status_code == 200


def test_random_keys_are_recorded_under_stable_names() -> None:
    """UUID-shaped keys (the SDK's random ones) reach the ledger as uuid_0001 … in order,
    one-to-one, so two runs with different random keys record the same ledger."""
    def run(keys: list[str]) -> tuple[list[Any], str]:
        env = world()
        client = http(env)
        for key in keys:
            client.post("/v1/refunds", data={"charge": "ch_0001", "amount": "7"},
                        headers={"Idempotency-Key": key})
        return [e["idempotency_key"] for e in effects(env, "refund")], env.world.ledger.digest()

    one = run(["0b8f12aa-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "0b8f12aa-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
               "9e9e9e9e-1111-4222-8333-444455556666"])
    two = run(["11111111-2222-4333-8444-555566667777", "11111111-2222-4333-8444-555566667777",
               "aaaaaaaa-bbbb-4ccc-8ddd-eeeeffff0000"])
    assert one == two and one[0] == ["uuid_0001", "uuid_0002"]



@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from([
    "uuid_0001", "uuid_0002", "uuid_uuid_0001", "refund:ch_0001",
    "0b8f12aa-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "9e9e9e9e-1111-4222-8333-444455556666",
    "0B8F12AA-1C2D-4E5F-8A9B-0C1D2E3F4A5B"]), min_size=1, max_size=8))
def test_distinct_keys_stay_distinct_whatever_names_they_are_given(keys: list[str]) -> None:
    """Naming UUID-shaped keys is one-to-one over every key an agent may send: a literal key
    that looks like a given name (uuid_0001) never meets the UUID named so, so each distinct
    key applies its refund once and none is mistaken for another's replay or refused."""
    env = world()
    client = http(env)
    for key in keys:
        answer = client.post("/v1/refunds", data={"charge": "ch_0001", "amount": "7"},
                             headers={"Idempotency-Key": key})
        assert answer.status_code == 200, answer.text
    recorded = [e["idempotency_key"] for e in effects(env, "refund")]
    assert len(recorded) == len(set(recorded)) == len(dict.fromkeys(keys))


def test_an_overlong_key_is_refused() -> None:
    """Stripe refuses keys over 255 characters; so does the face, applying nothing."""
    env = world()
    response = http(env).post("/v1/refunds", data={"charge": "ch_0001"},
                              headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 400 and error_of(response)["param"] == "idempotency_key"
    assert effects(env, "refund") == []


# -- the other writes ----------------------------------------------------------------------


def test_customers_charges_and_payouts_over_the_wire() -> None:
    """Customers, charges and payouts are created and listed; each write records its
    effect; a payout beyond the available balance is balance_insufficient."""
    env = world()
    client = http(env)
    customer = client.post("/v1/customers", data={"email": "cy@example.com"}).json()
    charge = client.post("/v1/charges", data={"amount": "2500", "currency": "USD",
                                              "customer": customer["id"]}).json()
    assert (customer["id"], charge["id"], charge["currency"]) == ("cus_0003", "ch_0004", "usd")
    assert client.get("/v1/customers", params={"email": "cy@example.com"}).json()["data"] == [
        customer]
    available = 5000 + 1200 + 900 + 2500
    payout = client.post("/v1/payouts", data={"amount": str(available), "currency": "usd"})
    too_much = client.post("/v1/payouts", data={"amount": "1", "currency": "usd"})
    assert payout.status_code == 200 and payout.json()["object"] == "payout"
    assert too_much.status_code == 400 and error_of(too_much)["code"] == "balance_insufficient"
    assert [e.key for e in env.world.ledger.of("payments")] == [
        "customer:cus_0003", "charge:ch_0004", "payout:po_0001"]


def test_a_declined_test_card_is_a_402_card_error() -> None:
    """``source=tok_chargeDeclined`` is 402 card_error card_declined and charges nothing;
    retried under its key, the error replays with ``Idempotent-Replayed: true``."""
    env = world()
    response = http(env).post("/v1/charges", data={"amount": "100", "currency": "usd",
                                                   "source": "tok_chargeDeclined"})
    assert response.status_code == 402
    assert (error_of(response)["type"], error_of(response)["code"]) == ("card_error",
                                                                        "card_declined")
    assert effects(env, "charge") == []
    again = [http(env).post("/v1/charges", data={"amount": "100", "currency": "usd",
                                                 "source": "tok_chargeDeclined"},
                            headers={"Idempotency-Key": "d1"}) for _ in range(2)]
    assert "idempotent-replayed" not in again[0].headers
    assert again[1].headers["idempotent-replayed"] == "true"
    assert again[1].json() == again[0].json()


def test_bodies_are_json_with_sorted_keys() -> None:
    """Equal objects give equal bytes (sorted keys): the wire is deterministic."""
    client = http(world())
    one = client.get("/v1/charges/ch_0001").content
    assert one == client.get("/v1/charges/ch_0001").content
    assert list(json.loads(one)) == sorted(json.loads(one))


def test_key_is_a_test_secret() -> None:
    """The fixture key is a test secret key (the face's default acceptance)."""
    assert KEY.startswith("sk_test_")


# -- the fields Stripe's objects carry beyond the service's models ----------------------------


def _documented(path: str) -> dict[str, Any]:
    """The JSON Schema the OpenAPI document promises for the 200 body of ``GET path``."""
    document = openapi_document()
    schema = document["paths"]["/payments" + path]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    found: dict[str, Any] = json.loads(json.dumps(
        {**schema, "$defs": document["components"]["schemas"]}).replace(
        "#/components/schemas/", "#/$defs/"))
    return found


@pytest.mark.parametrize("path", ["/v1/customers/{id}", "/v1/charges/{id}", "/v1/refunds/{id}",
                                  "/v1/payouts/{id}", "/v1/customers", "/v1/charges",
                                  "/v1/refunds", "/v1/payouts"])
def test_objects_carry_the_added_fields_and_the_document_describes_them(path: str) -> None:
    """Every object and list item carries the fields the face adds for its type, and the
    OpenAPI document's schema for the answer accepts it."""
    env = world()
    client = http(env)
    made = {"customer": "cus_0001", "charge": "ch_0001",
            "refund": client.post("/v1/refunds", data={"charge": "ch_0001"}).json()["id"],
            "payout": client.post("/v1/payouts", data={"amount": "100", "currency": "usd"}
                                  ).json()["id"]}
    kind = path.split("/")[2][:-1]
    body = client.get(path.replace("{id}", made[kind])).json()
    objects = body["data"] if body["object"] == "list" else [body]
    assert objects and all(set(WIRE_FIELDS[kind]) <= set(o) for o in objects)
    errors = list(Draft202012Validator(_documented(path)).iter_errors(body))
    assert not errors, [e.message for e in errors]


def test_fields_derived_from_drifted_fields_are_left_out_and_given_ones_kept() -> None:
    """A drift that takes ``status`` or ``amount`` away takes the fields derived from it
    (``paid``, ``captured``, ``amount_captured``) too, rather than stating what the answer
    no longer shows; a field the (wrong) answer already has is kept as it is."""
    renamed = http(world([{"kind": "schema_drift", "target": "payments.get_charge",
                           "rename": {"status": "state", "amount": "amount_cents"}}]))
    drifted = renamed.get("/v1/charges/ch_0001").json()
    assert drifted["state"] == "succeeded" and drifted["livemode"] is False
    assert not {"paid", "captured", "amount_captured", "status", "amount"} & set(drifted)
    wrong = http(world([{"kind": "wrong_content", "target": "payments.get_charge",
                         "replace": {"paid": "yes", "status": "failed"}}]))
    answer = wrong.get("/v1/charges/ch_0001").json()
    assert (answer["paid"], answer["captured"], answer["amount_captured"]) == ("yes", False, 0)
