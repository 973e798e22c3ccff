"""A knowledge base of versioned documents with a deterministic keyword search.

Each document keeps every version it was published in. By default a search sees only the
*current* version of each document (the latest one published, unless it is marked obsolete);
with ``serve_obsolete`` on — the "obsolete policy" fault — every published version competes in
the ranking, so last year's refund policy can outrank this year's, exactly as a stale index does.

Ranking is token overlap: each distinct query word found in a version scores one, and one more
if it is also in the title; ties go to the smaller document id, then the newer version. No
randomness and no floating point, so one query always returns one list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from tether.sim.services._time import as_datetime, as_epoch
from tether.sim.services.errors import InvalidRequest, NotFound
from tether.sim.world import World
from tether.specs import StrictNumbers

__all__ = ["Document", "KnowledgeBase", "SearchHit", "tokens"]

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how",
    "i", "in", "is", "it", "my", "of", "on", "or", "our", "the", "this", "to", "was", "what",
    "when", "where", "which", "who", "why", "will", "with", "you", "your",
})


def tokens(text: str) -> set[str]:
    """The distinct lowercase words of ``text`` that carry meaning (stopwords dropped).

    >>> sorted(tokens("How do I get a REFUND for order #12?"))
    ['12', 'get', 'order', 'refund']
    """
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


class Document(BaseModel):
    """One version of a document."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    title: str
    version: int = Field(ge=1)
    body: str
    published_at: datetime
    obsolete: bool = False


class SearchHit(Document):
    """A document version found by :meth:`KnowledgeBase.search`, with its score."""

    score: int


class _SeedDocument(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    version: int | None = Field(default=None, ge=1)
    body: str
    published_at: datetime | None = None
    obsolete: bool = False


class _Seed(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[_SeedDocument] = Field(default_factory=list)
    serve_obsolete: bool = False


class KnowledgeBase:
    """Versioned documents, a keyword search and an ``obsolete policy`` switch.

    ``seed_state`` (one entry per version; ``version`` defaults to the document's next one,
    ``published_at`` to the world's start, and a version published later is invisible until
    then)::

        {
            "documents": [
                {"id": "kb_refunds", "title": "Refund policy", "version": 1,
                 "body": "Refunds within 30 days.", "published_at": "2025-01-01T00:00:00Z",
                 "obsolete": True},
                {"id": "kb_refunds", "title": "Refund policy", "version": 2,
                 "body": "Refunds within 14 days of purchase."},
            ],
            "serve_obsolete": False,
        }

    >>> kb = KnowledgeBase(World(seed=1), {"documents": [
    ...     {"id": "kb_1", "title": "Refund policy", "version": 1, "body": "30 days"},
    ...     {"id": "kb_1", "title": "Refund policy", "version": 2, "body": "14 days"}]})
    >>> [(h.id, h.version) for h in kb.search("refund policy")]
    [('kb_1', 2)]
    """

    #: The effects this service records in the world's ledger (``operation`` → field → the
    #: types its value can have): what a scenario's invariants may name and match on.
    EFFECTS: ClassVar[dict[str, dict[str, tuple[type, ...]]]] = {
        "publish": {"document": (str,), "version": (int,), "title": (str,), "obsolete": (bool,)},
    }

    #: What its clients may call (``env.client("kb")``).
    OPERATIONS: ClassVar[tuple[str, ...]] = ("search", "get", "publish")

    def __init__(self, world: World, seed_state: Mapping[str, Any] | None = None) -> None:
        self.world = world
        seed = _Seed.model_validate(seed_state or {})
        self.serve_obsolete = seed.serve_obsolete
        self._versions: dict[str, dict[int, tuple[float, Document]]] = {}
        start = world.now()
        for entry in seed.documents:
            at = as_epoch(entry.published_at) if entry.published_at is not None else start
            versions = self._versions.setdefault(entry.id, {})
            version = entry.version or max(versions, default=0) + 1
            document = Document(id=entry.id, title=entry.title, version=version,
                                body=entry.body, published_at=as_datetime(at),
                                obsolete=entry.obsolete)
            if document.version in versions:
                raise ValueError(f"kb seed: document {document.id} has version "
                                 f"{document.version} twice")
            versions[document.version] = (at, document)

    def _published(self, id: str) -> list[Document]:
        """The versions of ``id`` published by now, oldest first."""
        now = self.world.now()
        versions = self._versions.get(id, {})
        return [d for _, (at, d) in sorted(versions.items()) if at <= now]

    def _current(self, id: str) -> Document | None:
        published = self._published(id)
        if not published or published[-1].obsolete:
            return None
        return published[-1]

    def search(self, query: str, limit: int = 5) -> list[SearchHit]:
        """The best ``limit`` versions for ``query``: current ones, or all when
        ``serve_obsolete`` is on; only versions sharing at least one word with the query."""
        if limit <= 0:
            raise InvalidRequest("limit must be positive", "kb", "limit")
        wanted = tokens(query)
        candidates: list[Document] = []
        for id in sorted(self._versions):
            if self.serve_obsolete:
                candidates += self._published(id)
            elif (current := self._current(id)) is not None:
                candidates.append(current)
        hits = []
        for doc in candidates:
            title = tokens(doc.title)
            score = len(wanted & (title | tokens(doc.body))) + len(wanted & title)
            if score > 0:
                hits.append(SearchHit(**doc.model_dump(), score=score))
        hits.sort(key=lambda h: (-h.score, h.id, -h.version))
        return hits[:limit]

    def get(self, id: str, version: int | None = None) -> Document:
        """Version ``version`` of document ``id``, or its latest published version."""
        published = self._published(id)
        if version is not None:
            published = [d for d in published if d.version == version]
        if not published:
            which = f"version {version} of " if version is not None else ""
            raise NotFound(f"no {which}document {id!r}", "kb", "document", id)
        return published[-1]

    def publish(self, id: str, title: str, body: str, obsolete: bool = False) -> Document:
        """Publish the next version of ``id`` now (a policy changing mid-episode)."""
        versions = self._versions.setdefault(id, {})
        now = self.world.now()
        document = Document(id=id, title=title, version=max(versions, default=0) + 1, body=body,
                            published_at=as_datetime(now), obsolete=obsolete)
        versions[document.version] = (now, document)
        self.world.effect("kb", "publish", key=f"doc:{id}:v{document.version}", document=id,
                          version=document.version, title=title, obsolete=obsolete)
        return document

    def snapshot(self) -> dict[str, Any]:
        """Canonical state: every version of every document, by id then version
        (``documents.kb_refunds.2.body``)."""
        return {"documents": {id: {str(v): d.model_dump(mode="json")
                                   for v, (_, d) in sorted(self._versions[id].items())}
                              for id in sorted(self._versions)}}
