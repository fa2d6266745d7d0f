"""A streamed answer's batches in the model server (daemon/replicas/token_stream.py): the first
leaves as soon as the engine's first output exists, the rest keep the interval. No timing is
asserted: an interval of a minute makes "at once" unmistakable, and a test that waited for the
interval would take that minute."""
import asyncio

import pytest

from daemon.replicas.token_stream import first_at_once_then_batched

A_MINUTE_MS = 60_000


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


class Engine:
    """A stream whose outputs the test releases step by step (a list per engine step, all put
    out in one go, as vLLM's chat stream puts out the role chunk and the first token's)."""

    def __init__(self):
        self.steps: asyncio.Queue = asyncio.Queue()
        self.cancelled = False

    async def stream(self):
        try:
            while True:
                step = await self.steps.get()
                if step is None:
                    return
                if isinstance(step, Exception):
                    raise step
                for item in step:
                    yield item
        except asyncio.CancelledError:
            self.cancelled = True
            raise


def test_the_first_outputs_leave_at_once_and_the_rest_when_the_stream_ends():
    async def scenario():
        engine = Engine()
        batches = first_at_once_then_batched(engine.stream(), A_MINUTE_MS)
        engine.steps.put_nowait(["role", "token 1"])
        first = await asyncio.wait_for(batches.__anext__(), timeout=5)   # not a minute
        engine.steps.put_nowait(["token 2"])
        engine.steps.put_nowait(["token 3"])
        engine.steps.put_nowait(None)
        rest = [batch async for batch in batches]
        return first, rest

    first, rest = run(scenario())
    assert first == ["role", "token 1"]
    assert rest == [["token 2", "token 3"]]      # within the interval: one batch


def test_outputs_after_the_first_wait_for_the_interval():
    async def scenario():
        engine = Engine()
        batches = first_at_once_then_batched(engine.stream(), A_MINUTE_MS)
        engine.steps.put_nowait(["role", "token 1"])
        await batches.__anext__()
        engine.steps.put_nowait(["token 2"])
        second = asyncio.ensure_future(batches.__anext__())
        await asyncio.sleep(0.2)
        held = not second.done()
        second.cancel()
        return held

    assert run(scenario()) is True


def test_a_first_output_alone_is_followed_at_once_by_the_next():
    # With a reasoning or tool-call parser, vLLM's first chat output can be the role chunk alone;
    # the first text then leaves at once too, and only what follows waits for the interval.
    async def scenario():
        engine = Engine()
        batches = first_at_once_then_batched(engine.stream(), A_MINUTE_MS)
        engine.steps.put_nowait(["role"])
        first = await asyncio.wait_for(batches.__anext__(), timeout=5)
        engine.steps.put_nowait(["text 1"])
        second = await asyncio.wait_for(batches.__anext__(), timeout=5)
        engine.steps.put_nowait(["text 2"])
        third = asyncio.ensure_future(batches.__anext__())
        await asyncio.sleep(0.2)
        held = not third.done()
        third.cancel()
        return first, second, held

    assert run(scenario()) == (["role"], ["text 1"], True)


def test_outputs_of_one_step_leave_together_even_with_a_turn_of_the_loop_between_them():
    # A source that yields to the event loop once between two outputs of one step (as a wrapper
    # around vLLM's stream may): the first batch still holds both.
    async def source():
        yield "role"
        await asyncio.sleep(0)
        yield "token 1"
        await asyncio.Event().wait()

    async def scenario():
        batches = first_at_once_then_batched(source(), A_MINUTE_MS)
        try:
            return await asyncio.wait_for(batches.__anext__(), timeout=5)
        finally:
            await batches.aclose()

    assert run(scenario()) == ["role", "token 1"]


def test_a_long_answer_comes_in_several_batches_in_order_then_its_error():
    # Outputs spread over many intervals (a real clock; nothing is timed: only order, completeness
    # and that batching happened are asserted).
    async def source():
        for i in range(40):
            yield i
            await asyncio.sleep(0.003)
        raise RuntimeError("engine died")

    async def scenario():
        got = []
        with pytest.raises(RuntimeError, match="engine died"):
            async for batch in first_at_once_then_batched(source(), 10):
                got.append(batch)
        return got

    batches = run(scenario())
    assert [item for batch in batches for item in batch] == list(range(40))
    assert len(batches) > 2


def test_interval_none_sends_the_rest_at_the_end():
    async def scenario():
        engine = Engine()
        batches = first_at_once_then_batched(engine.stream(), None)
        engine.steps.put_nowait(["role", "token 1"])
        first = await asyncio.wait_for(batches.__anext__(), timeout=5)
        for step in (["token 2"], ["token 3"], None):
            engine.steps.put_nowait(step)
        return [first] + [batch async for batch in batches]

    assert run(scenario()) == [["role", "token 1"], ["token 2", "token 3"]]


@pytest.mark.parametrize("interval_ms", [0, 50, A_MINUTE_MS])
def test_every_output_arrives_once_in_order(interval_ms):
    async def scenario():
        engine = Engine()
        for step in (["a", "b"], ["c"], [], ["d", "e", "f"], None):
            engine.steps.put_nowait(step)
        return [batch async for batch in first_at_once_then_batched(engine.stream(), interval_ms)]

    batches = run(scenario())
    assert [item for batch in batches for item in batch] == ["a", "b", "c", "d", "e", "f"]
    if interval_ms == 0:
        assert batches == [["a"], ["b"], ["c"], ["d"], ["e"], ["f"]]   # as Ray's Batcher at 0


def test_an_engine_error_comes_after_the_outputs_before_it():
    async def scenario():
        engine = Engine()
        got = []
        for step in (["a"], ["b"], RuntimeError("engine died"), None):
            engine.steps.put_nowait(step)
        with pytest.raises(RuntimeError, match="engine died"):
            async for batch in first_at_once_then_batched(engine.stream(), A_MINUTE_MS):
                got.extend(batch)
        return got

    assert run(scenario()) == ["a", "b"]


def test_an_engine_error_before_any_output_is_raised():
    async def scenario():
        engine = Engine()
        engine.steps.put_nowait(ValueError("bad request"))
        return [batch async for batch in first_at_once_then_batched(engine.stream(), A_MINUTE_MS)]

    with pytest.raises(ValueError, match="bad request"):
        run(scenario())


def test_an_empty_stream_ends_with_no_batch():
    async def scenario():
        engine = Engine()
        engine.steps.put_nowait(None)
        return [batch async for batch in first_at_once_then_batched(engine.stream(), A_MINUTE_MS)]

    assert run(scenario()) == []


@pytest.mark.parametrize("goes_away", ["aclose", "cancelled"])
def test_a_client_that_goes_away_cancels_the_engines_stream(goes_away):
    # Serve 2.60 throws CancelledError into a replica's response generator (or cancels the task
    # that runs it) when the request is cancelled; a consumer may also just close it.
    async def scenario():
        engine = Engine()
        batches = first_at_once_then_batched(engine.stream(), A_MINUTE_MS)
        engine.steps.put_nowait(["role", "token 1"])
        await batches.__anext__()
        if goes_away == "aclose":
            await batches.aclose()
        else:
            with pytest.raises(asyncio.CancelledError):
                await batches.athrow(asyncio.CancelledError())
        for _ in range(100):
            if engine.cancelled:
                break
            await asyncio.sleep(0.01)
        return engine.cancelled

    assert run(scenario()) is True
