"""How a model server sends a streamed answer over Serve: the first output at once, the rest in
batches. Runs inside the model's Ray replicas; pure asyncio (no Ray, no vLLM), so it is tested
on its own (tests/unit/test_token_stream.py).

Ray Serve LLM batches a streamed answer's chunks (`ray.llm._internal.serve.utils.batcher.Batcher`,
50 ms by default) so that a long answer crosses Serve's two hops (model server -> front end ->
HTTP proxy) as a few messages, not one per token. Its first batch is sent only when the first
interval ends, so the first token waits for the timer: on average half of it, up to all of it.
The front end starts the HTTP response only when that first batch arrives (it checks it for an
error), so the client's time to first token carries the wait whole. Here the first batch leaves
as soon as the engine's first output is in; later ones keep Ray's interval.
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, TypeVar

T = TypeVar("T")


# Items sent as soon as they exist, before batching starts. Two: vLLM's chat stream puts out the
# role chunk and the first token's together, but with a reasoning or tool-call parser its first
# output may be the role chunk alone, and the first text must not then wait a whole interval.
AT_ONCE = 2


async def first_at_once_then_batched(source: AsyncIterator[T],
                                     interval_ms: float | None) -> AsyncIterator[list[T]]:
    """The items of `source` in lists: the first items as soon as they exist (AT_ONCE of them,
    each list with what arrived in the same step), then one list per `interval_ms` holding what
    arrived in it, and the rest when the source ends (interval None: all of the rest then).
    Interval 0: every item alone, as Ray's Batcher does. An error of the source is raised after
    the items before it; closing or cancelling this stream cancels the source (the engine aborts
    the request)."""
    if interval_ms == 0:
        async for item in source:
            yield [item]
        return
    queue: asyncio.Queue[T] = asyncio.Queue()
    arrived = asyncio.Event()     # set by each item, and by the end of the source

    async def read() -> None:
        try:
            async for item in source:
                queue.put_nowait(item)
                arrived.set()
        finally:
            arrived.set()

    reader = asyncio.create_task(read())

    def drain() -> tuple[list[T], bool]:
        # Whether the reader is done is read with the drain, in one step: nothing arrives between.
        items = []
        while not queue.empty():
            items.append(queue.get_nowait())
        return items, reader.done()

    sent = 0
    try:
        while True:
            if sent < AT_ONCE:
                await arrived.wait()
                arrived.clear()
                # One turn of the loop: what the engine put out in the same step is queued by now.
                await asyncio.sleep(0)
            else:   # the interval, or the end of the source if sooner
                await asyncio.wait({reader}, timeout=None if interval_ms is None else interval_ms / 1000)
            items, done = drain()
            if items:
                yield items
                sent += len(items)
            if done:
                reader.result()    # the source's error, if it ended with one
                return
    finally:
        if not reader.done():
            reader.cancel()
