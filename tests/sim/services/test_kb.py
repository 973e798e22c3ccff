"""Knowledge base: versions, scheduled publication, deterministic ranking, obsolete policy."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tether.sim.services.errors import InvalidRequest, NotFound
from tether.sim.services.kb import KnowledgeBase, tokens
from tether.sim.world import World

from .conftest import HOUR_S, START

DOCS: list[dict[str, Any]] = [
    {"id": "kb_refunds", "title": "Refund policy", "version": 1,
     "body": "Refunds are accepted within 30 days of purchase.",
     "published_at": "2025-01-01T00:00:00Z"},
    {"id": "kb_refunds", "title": "Refund policy", "version": 2,
     "body": "Refunds are accepted within 14 days. Damaged items are refunded in full."},
    {"id": "kb_shipping", "title": "Shipping", "body": "Orders ship in 2 days; damaged "
     "parcels are replaced."},
    {"id": "kb_old_promo", "title": "Holiday refund promo", "body": "Refunds any time!",
     "obsolete": True},
    {"id": "kb_refunds", "title": "Refund policy", "version": 3,
     "body": "From February: refunds within 7 days.", "published_at": "2026-01-01T02:00:00Z"},
]


@pytest.fixture
def kb(world: World) -> KnowledgeBase:
    return KnowledgeBase(world, {"documents": DOCS})


def hits(kb: KnowledgeBase, query: str, **kwargs: Any) -> list[tuple[str, int, int]]:
    return [(h.id, h.version, h.score) for h in kb.search(query, **kwargs)]


def test_tokens_drop_stopwords_and_punctuation() -> None:
    """Tokens are distinct lowercase words without stopwords."""
    assert tokens("What is THE refund-policy, for 2 days?") == {"refund", "policy", "2", "days"}


def test_get_latest_published_version(world: World, kb: KnowledgeBase) -> None:
    """get() returns the latest version published by now; later versions appear on time."""
    assert kb.get("kb_refunds").version == 2
    world.clock.advance(2 * HOUR_S)
    assert kb.get("kb_refunds").version == 3


def test_get_a_version(kb: KnowledgeBase) -> None:
    """get(id, version) returns that version, with its own publication time."""
    old = kb.get("kb_refunds", version=1)
    assert old.body.startswith("Refunds are accepted within 30")
    assert old.published_at.isoformat() == "2025-01-01T00:00:00+00:00"
    assert kb.get("kb_refunds", version=2).published_at.timestamp() == START


@pytest.mark.parametrize(("id", "version"), [("kb_nope", None), ("kb_refunds", 9),
                                             ("kb_refunds", 3)])
def test_missing_documents(kb: KnowledgeBase, id: str, version: int | None) -> None:
    """Unknown documents, versions and not-yet-published versions are NotFound."""
    with pytest.raises(NotFound):
        kb.get(id, version)


def test_get_returns_an_obsolete_document_flagged(kb: KnowledgeBase) -> None:
    """Asked by id, an obsolete document is returned with its flag set."""
    assert kb.get("kb_old_promo").obsolete


def test_search_sees_current_versions_only(kb: KnowledgeBase) -> None:
    """By default each document competes with its current version; obsolete ones never."""
    assert hits(kb, "refund policy days") == [("kb_refunds", 2, 5), ("kb_shipping", 1, 1)]


def test_title_words_count_double(kb: KnowledgeBase) -> None:
    """A query word in the title scores two; one only in the body scores one."""
    assert hits(kb, "shipping") == [("kb_shipping", 1, 2)]
    assert hits(kb, "damaged") == [("kb_refunds", 2, 1), ("kb_shipping", 1, 1)]


def test_no_overlap_no_hit(kb: KnowledgeBase) -> None:
    """Documents sharing no word with the query are left out."""
    assert hits(kb, "the of and") == [] and hits(kb, "warranty") == []


def test_limit(kb: KnowledgeBase) -> None:
    """At most ``limit`` hits; a non-positive limit is refused."""
    assert len(kb.search("damaged", limit=1)) == 1
    with pytest.raises(InvalidRequest):
        kb.search("x", limit=0)


def test_obsolete_policy_lets_old_versions_rank(world: World, kb: KnowledgeBase) -> None:
    """With serve_obsolete, superseded and obsolete versions compete, ties newest first."""
    kb.serve_obsolete = True
    assert hits(kb, "refund policy days") == [
        ("kb_refunds", 2, 5), ("kb_refunds", 1, 5), ("kb_old_promo", 1, 2),
        ("kb_shipping", 1, 1)]
    assert hits(kb, "purchase refund")[0] == ("kb_refunds", 1, 3)
    assert hits(kb, "refund promo")[0] == ("kb_old_promo", 1, 4)


def test_obsolete_policy_from_the_seed(world: World) -> None:
    """serve_obsolete can be seeded."""
    kb = KnowledgeBase(world, {"documents": DOCS, "serve_obsolete": True})
    assert ("kb_old_promo", 1, 2) in hits(kb, "holiday")


def test_publish_adds_a_version(world: World, kb: KnowledgeBase) -> None:
    """publish() stores the next version now, records kb.publish, and search uses it."""
    world.clock.advance(60)
    doc = kb.publish("kb_shipping", "Shipping", "Orders ship in 5 days.")
    assert (doc.version, doc.published_at.timestamp()) == (2, START + 60)
    assert hits(kb, "ship")[0][:2] == ("kb_shipping", 2)
    effects = world.ledger.of("kb", "publish")
    assert [e.key for e in effects] == ["doc:kb_shipping:v2"]


def test_reads_record_nothing(world: World, kb: KnowledgeBase) -> None:
    """Searching and reading change nothing."""
    kb.search("refund")
    kb.get("kb_refunds")
    assert len(world.ledger) == 0


@settings(max_examples=40, deadline=None)
@given(st.permutations(DOCS[:4] + [{**d, "id": f"kb_copy_{i}"} for i, d in enumerate(DOCS[2:4])]),
       st.sampled_from(["refund", "refund policy days", "damaged parcels", "holiday"]),
       st.booleans())
def test_ranking_ignores_seed_order(docs: list[dict[str, Any]], query: str,
                                    serve_obsolete: bool) -> None:
    """Ranking depends on the documents, never on their order in the seed; ties go by id."""
    kb = KnowledgeBase(World(seed=1), {"documents": docs, "serve_obsolete": serve_obsolete})
    reference = KnowledgeBase(World(seed=2), {"documents": sorted(
        docs, key=lambda d: (d["id"], d.get("version", 0))), "serve_obsolete": serve_obsolete})
    found = kb.search(query, limit=10)
    assert found == reference.search(query, limit=10)
    keys = [(-h.score, h.id, -h.version) for h in found]
    assert keys == sorted(keys)


def test_seed_versions_default_and_must_be_unique(world: World) -> None:
    """A version defaults to the next one; a repeated version or unknown field is refused."""
    kb = KnowledgeBase(world, {"documents": [{"id": "d", "title": "t", "body": "a"},
                                             {"id": "d", "title": "t", "body": "b"}]})
    assert kb.get("d").version == 2
    with pytest.raises(ValueError, match="version 1 twice"):
        KnowledgeBase(world, {"documents": [{"id": "d", "title": "t", "body": "a",
                                             "version": 1}] * 2})
    with pytest.raises(ValidationError, match="titel"):
        KnowledgeBase(world, {"documents": [{"id": "d", "titel": "t", "body": "a"}]})


def test_snapshot(kb: KnowledgeBase) -> None:
    """The snapshot holds every version by id and version, as canonical JSON."""
    snap = kb.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert list(snap["documents"]["kb_refunds"]) == ["1", "2", "3"]
    assert snap["documents"]["kb_old_promo"]["1"]["obsolete"] is True
