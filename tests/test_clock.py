"""The clock of the engine's timers: due times on a grid, one wake-up per slot, never early."""

from __future__ import annotations

import asyncio

from support import async_test, engine_of

from scenario_engine.runtime.clock import GRID, Clock
from scenario_engine.runtime.connection import Timer


def timers(count: int) -> list[Timer]:
    route = engine_of("route /ws { }").program.routes[0]
    return [Timer(route, None, f"t{i}", {}, 1.0, 1.0) for i in range(count)]


@async_test
async def test_timers_fire_in_the_order_of_their_due_times_never_early() -> None:
    loop = asyncio.get_running_loop()
    fired: list[tuple[Timer, float, float]] = []
    clock = Clock(lambda timer, due: fired.append((timer, due, loop.time())))
    start = loop.time()
    # Out of order, several within one step of the grid, one on a fine grid of its own.
    dues = [0.035, 0.031, 0.033, 0.012, 0.05]
    for timer, offset in zip(timers(5), dues, strict=True):
        clock.start(timer, start + offset, 1.0)
    fine = timers(1)[0]
    clock.start(fine, start + 0.02, 0.05)  # a 50 ms period: a 0.5 ms grid
    assert len(clock) == 6
    # How late the loop itself runs a plain callback meanwhile: a loaded machine (a parallel
    # test run) delays every callback, and that delay is not the clock's.
    lags: list[float] = []
    for offset in dues:
        loop.call_at(start + offset, lambda due=start + offset: lags.append(loop.time() - due))
    await asyncio.sleep(0.1)
    for _ in range(50):  # up to another second on a loaded machine
        if len(fired) == 6:
            break
        await asyncio.sleep(0.02)
    assert len(fired) == 6 and len(clock) == 0
    slack = 0.02 + max(lags)
    # Timers of one period (one grid) run in the order of their due times.
    same_grid = [due for timer, due, _ in fired if timer is not fine]
    assert same_grid == sorted(same_grid)
    for _, due, at in fired:
        assert at >= due - 1e-6  # never early
        assert at - due < GRID + slack  # at most one step late, and the loop's own lag


@async_test
async def test_one_wake_up_per_slot_and_a_stopped_or_moved_timer_is_not_fired() -> None:
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    clock = Clock(lambda timer, due: fired.append(timer.name))
    start = loop.time()
    many = timers(100)
    for timer in many:
        clock.start(timer, start + 0.021, 1.0)
    assert len(clock._wake_ups) == 1  # a hundred timers due in one step: one wake-up
    clock.stop(many[0])
    clock.start(many[1], start + 0.2, 1.0)  # moved later: its old place is stale
    await asyncio.sleep(0.06)
    assert len(fired) == 98 and "t0" not in fired and "t1" not in fired
    assert many[1] in clock
    clock.close()
    await asyncio.sleep(0.2)
    assert len(fired) == 98
