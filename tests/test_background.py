"""The gateway's background loops (the intake's dispatcher, the configuration refresh) stop when
asked, whatever the moment."""

import asyncio

from chatops.background import Loop


def test_a_loop_stops_even_when_its_work_swallows_a_cancellation() -> None:
    """On Python 3.11 ``asyncio.wait_for`` eats a cancellation that comes just as what it waits
    for finishes; the loop must stop all the same, not hang the gateway's shutdown."""
    swallowed: list[bool] = []

    async def work() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)  # goes round once more, as after a swallowed cancel

    async def start_and_stop() -> bool:
        loop = Loop(work, "swallowing")
        loop.start()
        await asyncio.sleep(0.01)
        stopping = asyncio.create_task(loop.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)  # waits, never cancels
        stopping.cancel()
        return stopping in done

    assert asyncio.run(start_and_stop()), "Loop.stop() still waiting after 5 s"
    assert swallowed == [True]
