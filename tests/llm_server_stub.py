"""A Serve application that speaks Ray Serve LLM's LLMServer handle protocol (`chat` and
`completions` take the request and stream responses: a response object, or for stream=true
lists of "data: {json}" strings) without vLLM, so argus's real front end can be tested on a real
Serve in seconds. Every answer says which deployment answered, the `model` it was handed and
Serve's multiplexed model id (and, when it counts, how many requests it has been handed). It can
start slowly (a sleep in its constructor) and be autoscaled from zero replicas. Built on the Ray nodes by import path `llm_server_stub:build`
(tests/ on their PYTHONPATH)."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncGenerator

from ray import serve
from ray.llm._internal.serve.core.configs.openai_api_models import ChatCompletionResponse, CompletionResponse


@serve.deployment(ray_actor_options={"num_cpus": 0})
class StubLLMServer:
    def __init__(self, name: str, chunks: int, chunk_seconds: float, start_seconds: float = 0.0,
                 answer_seconds: float = 0.0, count: bool = False) -> None:
        time.sleep(start_seconds)   # a replica that takes a while to start, like a model loading
        self.name, self.chunks, self.chunk_seconds = name, chunks, chunk_seconds
        self.answer_seconds, self.count, self.served = answer_seconds, count, 0

    def _said(self, request: Any) -> str:
        said = f"{self.name} model={request.model} multiplexed={serve.get_multiplexed_model_id()}"
        return f"{said} served={self.served}" if self.count else said

    async def _stream(self, request: Any, kind: str) -> AsyncGenerator[list[str], None]:
        for i in range(self.chunks):
            await asyncio.sleep(self.chunk_seconds)
            delta = {"delta": {"content": f"{self._said(request)} #{i}"}} if kind == "chat" else {
                "text": f"{self._said(request)} #{i}"}
            yield [f"data: {json.dumps({'model': request.model, 'choices': [{'index': 0, **delta}]})}\n\n"]

    async def chat(self, request: Any, raw_request_info: Any = None) -> AsyncGenerator[Any, None]:
        self.served += 1
        if request.stream:
            async for chunk in self._stream(request, "chat"):
                yield chunk
            return
        await asyncio.sleep(self.answer_seconds)
        yield ChatCompletionResponse.model_validate({
            "id": "stub", "object": "chat.completion", "created": 0, "model": request.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self._said(request)},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    async def completions(self, request: Any, raw_request_info: Any = None) -> AsyncGenerator[Any, None]:
        self.served += 1
        if request.stream:
            async for chunk in self._stream(request, "completions"):
                yield chunk
            return
        await asyncio.sleep(self.answer_seconds)
        yield CompletionResponse.model_validate({
            "id": "stub", "object": "text_completion", "created": 0, "model": request.model,
            "choices": [{"index": 0, "text": self._said(request), "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


def build(args: dict[str, Any]) -> Any:
    """args: "deployment" (its Serve name), "name" (what it says), "chunks" and "chunk_seconds"
    (a stream's length and pace), "answer_seconds" (a plain answer's time), "start_seconds" (a
    replica's start), "count" (say served=<requests handed to this replica so far>),
    "autoscaling_config" (Serve's, e.g. min_replicas 0), "max_ongoing_requests" (e.g. 1: each
    replica takes one request at a time, so two streams run on two replicas)."""
    options: dict[str, Any] = {"name": args["deployment"]}
    for option in ("autoscaling_config", "max_ongoing_requests"):
        if args.get(option) is not None:
            options[option] = args[option]
    return StubLLMServer.options(**options).bind(
        args["name"], int(args.get("chunks", 3)), float(args.get("chunk_seconds", 0.0)),
        float(args.get("start_seconds", 0.0)), float(args.get("answer_seconds", 0.0)), bool(args.get("count", False)))
