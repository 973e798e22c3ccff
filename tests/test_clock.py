"""Clocks: virtual time moves only when told, and timers wake in a deterministic order."""

from __future__ import annotations

import asyncio

import pytest

from tether.clock import Clock, SystemClock, VirtualClock, system_seed


def test_virtual_clock_moves_only_when_told() -> None:
    """now() is constant until advance(), which refuses to go backwards."""
    clock = VirtualClock(start=100.0)
    assert clock.now() == 100.0
    clock.advance(2.5)
    assert clock.now() == 102.5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_autojump_wakes_sleepers_in_deadline_order_without_real_waiting() -> None:
    """Concurrent sleepers wake by deadline (ties by creation order) and 1 h costs no real time."""
    clock = VirtualClock(start=0.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    async def main() -> None:
        await asyncio.gather(sleeper("c", 3600), sleeper("a", 90), sleeper("b", 90),
                             sleeper("d", 0.5))

    asyncio.run(main())
    assert woke == [("d", 0.5), ("a", 90.0), ("b", 90.0), ("c", 3600.0)]


def test_manual_clock_waits_for_advance() -> None:
    """Without autojump a sleeper stays asleep until advance() passes its deadline."""
    clock = VirtualClock(start=0.0, autojump=False)

    async def main() -> list[str]:
        log: list[str] = []

        async def sleeper() -> None:
            await clock.sleep(10)
            log.append("woke")

        task = asyncio.create_task(sleeper())
        await asyncio.sleep(0)
        assert clock.pending_timers() == 1
        clock.advance(9)
        await asyncio.sleep(0)
        assert log == []
        clock.advance(1)
        await task
        return log

    assert asyncio.run(main()) == ["woke"]


def test_system_clock_satisfies_the_contract() -> None:
    """SystemClock is a Clock whose now() is epoch seconds; seeds differ between calls."""
    clock = SystemClock()
    assert isinstance(clock, Clock)
    assert clock.now() > 1.7e9
    asyncio.run(clock.sleep(0))
    assert system_seed() != system_seed()


def test_autojump_waits_for_work_that_needs_many_loop_iterations() -> None:
    """A call racing a timer is not cut short by a jump while it still has work to run."""
    import asyncio

    from tether.runtime.timeouts import within

    async def busy() -> str:
        for _ in range(200):  # far more loop iterations than the jumper's fixed yields
            await asyncio.sleep(0)
        return "done"

    async def main() -> tuple[str, float]:
        clock = VirtualClock(start=0.0)
        value = await within(clock, busy(), 60.0)
        return value, clock.now()

    assert asyncio.run(main()) == ("done", 0.0)
