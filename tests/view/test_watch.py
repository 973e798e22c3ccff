"""IndexWatch: one poller for every open page, a file store read only when its files moved,
rounds timed by an injected clock (a VirtualClock stepped by hand here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

from tether import SQLiteStore, VirtualClock
from tether.view.watch import FULL_READ_S, QUIET_S, IndexWatch, files_stamp

from .runs import approve, start_another


async def _sleeping(clock: VirtualClock) -> None:
    """Until the watcher has finished its round (its read runs in a thread) and sleeps."""
    while clock.pending_timers() == 0:
        await asyncio.sleep(0.001)


async def _round(clock: VirtualClock, seconds: float = 0.5) -> None:
    clock.advance(seconds)
    await asyncio.sleep(0.001)
    await _sleeping(clock)


def _next(stream: AsyncGenerator[list[str], None]) -> asyncio.Task[list[str]]:
    return asyncio.ensure_future(anext(stream))


def test_every_page_hears_of_a_change_from_one_read(store_path: Path) -> None:
    """Two listeners, told when they listen, then one write by another connection: both are
    told which run moved, and the index was read once for the baseline and once for the
    change."""

    async def main() -> None:
        clock = VirtualClock(autojump=False)
        watch = IndexWatch(SQLiteStore(store_path), clock, poll_s=0.5)
        a, b = watch.changes(), watch.changes()
        assert list(await asyncio.wait_for(asyncio.gather(anext(a), anext(b)), 30)) == [[], []]
        await _sleeping(clock)
        assert watch.reads == 1
        got_a, got_b = _next(a), _next(b)
        approve(store_path)
        await _round(clock)
        assert list(await asyncio.wait_for(asyncio.gather(got_a, got_b), 30)) == [
            ["run-wait"], ["run-wait"]]
        assert watch.reads == 2
        await a.aclose()
        await b.aclose()

    asyncio.run(main())


def test_an_unchanged_file_store_is_not_read_again(store_path: Path) -> None:
    """Rounds whose files did not move skip the read, until FULL_READ_S has passed; a write
    is then seen at the next round."""

    async def main() -> None:
        clock = VirtualClock(autojump=False)
        watch = IndexWatch(SQLiteStore(store_path), clock, poll_s=0.5)
        stream = watch.changes()
        assert await asyncio.wait_for(anext(stream), 30) == []  # listening
        pending = _next(stream)
        await _sleeping(clock)
        for _ in range(int(FULL_READ_S / 0.5) - 1):
            await _round(clock)
        assert watch.reads == 1
        await _round(clock)
        assert watch.reads == 2
        await asyncio.to_thread(start_another, store_path)
        await _round(clock)
        assert await asyncio.wait_for(pending, 30) == ["run-new"] and watch.reads == 3
        await stream.aclose()

    asyncio.run(main())


def test_a_quiet_store_still_sends_keepalives(store_path: Path) -> None:
    """After QUIET_S without a change, listeners get an empty list (the stream's keepalive)."""

    async def main() -> None:
        clock = VirtualClock(autojump=False)
        watch = IndexWatch(SQLiteStore(store_path), clock, poll_s=0.5)
        stream = watch.changes()
        assert await asyncio.wait_for(anext(stream), 30) == []  # listening
        pending = _next(stream)
        await _sleeping(clock)
        for _ in range(int(QUIET_S / 0.5) - 1):
            await _round(clock)
        assert not pending.done()
        await _round(clock)
        assert await asyncio.wait_for(pending, 30) == []
        await stream.aclose()

    asyncio.run(main())


def test_the_stamp_follows_the_files(store_path: Path, tmp_path: Path) -> None:
    """A SQLite store's stamp changes with a write; a store without files has none."""
    from tether import MemoryStore

    store = SQLiteStore(store_path)
    before = files_stamp(store)
    assert before is not None
    start_another(store_path)
    assert files_stamp(store) != before
    assert files_stamp(MemoryStore()) is None


def test_closing_ends_every_stream(store_path: Path) -> None:
    """close() (the viewer shutting down) ends the listeners' iteration."""

    async def main() -> list[list[str]]:
        watch = IndexWatch(SQLiteStore(store_path), VirtualClock(autojump=False), poll_s=0.5)
        stream = watch.changes()
        assert await anext(stream) == []
        watch.close()
        return [item async for item in stream]

    assert asyncio.run(main()) == []


def test_a_store_that_fails_does_not_end_the_watch(store_path: Path) -> None:
    """Reads failing (here: the watcher's handle on the store is closed) cost the rounds
    they fail in, not the watch: listeners still get their keepalives."""

    async def main() -> None:
        clock = VirtualClock(autojump=False)
        store = SQLiteStore(store_path)
        watch = IndexWatch(store, clock, poll_s=0.5)
        stream = watch.changes()
        assert await asyncio.wait_for(anext(stream), 30) == []
        pending = _next(stream)
        await _sleeping(clock)
        store.close()
        for _ in range(int(QUIET_S / 0.5)):
            await _round(clock)
        assert await asyncio.wait_for(pending, 30) == [] and watch.reads == 1
        await stream.aclose()

    asyncio.run(main())


def test_the_stamp_follows_a_leased_runs_lazy_appends(tmp_path: Path) -> None:
    """A leased run's lazy steps go to its segment beside the database, touching neither the
    database nor its WAL: the stamp still moves, so the viewer reads the index again."""
    from tether.events import RunStarted, StepRecorded

    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    store.append("r", [RunStarted(seq=1, at=0.0, workflow="w", seed=1)],
                 expected_last_seq=0)
    lease = store.acquire("r", "w1", now=1.0, ttl_s=60.0)
    store.append("r", [StepRecorded(seq=2, at=2.0, pos=0, call="step", name="s")],
                 expected_last_seq=1, lease=lease)
    before = files_stamp(store)
    store.append("r", [StepRecorded(seq=3, at=3.0, pos=1, call="step", name="s")],
                 expected_last_seq=2, lease=lease)
    assert Path(f"{path}-seg").is_dir(), "the lazy step did not go to a segment"
    assert files_stamp(store) != before
