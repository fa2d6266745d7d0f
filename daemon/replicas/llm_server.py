"""The model server's class, run inside Ray Serve replicas: Ray Serve LLM's own LLMServer as
`ArgusLLMServer` (argus's adapters, the path rules where weights are read, one repair). Each
model's app is built by model_server.build_model_app, which names this class by import path:
this module (and vLLM, which it imports) is imported where a replica runs, not where Serve
builds the app.
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import logging.handlers
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, AsyncGenerator

from ray import serve
from ray.serve.llm import LLMConfig, LLMServer

from daemon.core.replica_contract import replica_start_line
from daemon.replicas import ray_private
from daemon.replicas.route_table import served_model
from daemon.replicas.token_stream import first_at_once_then_batched
from daemon.replicas.weights import (Owner, WeightsRefusedError, adapter_stamp, check_model_folder,
                                     snapshot_adapter)


SERVE_LOGGER = "ray.serve"


def serve_log_targets() -> list[tuple[logging.handlers.MemoryHandler, logging.Handler | None]]:
    """Serve's buffered log handlers in this process with the file handler each writes to."""
    return [(h, h.target) for h in logging.getLogger(SERVE_LOGGER).handlers
            if isinstance(h, logging.handlers.MemoryHandler)]


def restore_serve_log_targets(saved: list[tuple[logging.handlers.MemoryHandler, logging.Handler | None]]) -> int:
    """Give back each buffered handler the target that a logging reset took from it; returns
    how many were repaired. A closed FileHandler reopens its file on the next record."""
    repaired = 0
    for handler, target in saved:
        if handler.target is None and target is not None:
            handler.setTarget(target)
            repaired += 1
    return repaired


def log_replica_start(constructed: float, engine_begun: float) -> None:
    """Write how this replica's start went to its Serve log, at once (Serve buffers its log
    records; argusd reads the line back when the replica makes its model RUNNING). The process's
    creation is its start: Serve starts each replica in a new Ray worker (its runtime_env is the
    model's own), so no worker started earlier for something else is counted."""
    logger = logging.getLogger(SERVE_LOGGER)
    try:
        import psutil   # vLLM's requirement (Ray also ships a copy); inside: a report never fails a start

        logger.info(replica_start_line(psutil.Process().create_time(), constructed, engine_begun, time.time()))
        for handler in logger.handlers:
            handler.flush()
    except Exception as exc:   # a report of the start never fails the start it reports
        logger.warning("argus could not report this replica's start: %s", exc)


@dataclass(frozen=True)
class AdapterEntry:
    """One adapter in the table argusd sends (user_config): its folder, its generation and its
    owner, whose roots the folder must stay in."""

    path: str
    generation: int
    user_id: str | None

    @classmethod
    def of(cls, entry: dict[str, Any]) -> "AdapterEntry":
        return cls(entry["path"], int(entry["generation"]), entry.get("user_id"))


@dataclass(frozen=True)
class LoadedAdapter:
    entry: AdapterEntry
    stamp: tuple          # the folder as it was when loaded (weights.adapter_stamp)
    vllm_name: str        # the name vLLM holds these weights under
    copy: str             # the replica's own copy vLLM reads them from


# Adapters one replica keeps loaded (and copied under its own folder): beyond it, the least
# recently used one is unloaded and its copy removed; its next request loads it again (checked
# and copied anew). With one copy per loaded adapter this bounds the replica's copies.
MAX_LOADED_ADAPTERS = 16


def vllm_lora_name(adapter_id: str, digest: str) -> str:
    """The LoRA name inside vLLM: the adapter id and its weights' digest. vLLM keys prefix-cache
    blocks by LoRA name (0.29: the name alone; 0.32: name and path), so changed weights get
    names no block of the old weights was cached under."""
    return f"{adapter_id}@{digest[:16]}"


def renamed(item: Any, vllm_name: str, adapter_id: str) -> Any:
    """A response item (vLLM names the model by its LoRA name) as the client asked: the
    adapter's public id. Streamed items are `data: {json}` strings, batched in lists."""
    if isinstance(item, str):
        return item.replace(vllm_name, adapter_id)   # the digest makes the name unique
    if isinstance(item, list):
        return [renamed(i, vllm_name, adapter_id) for i in item]
    if getattr(item, "model", None) == vllm_name:
        item.model = adapter_id
    error = getattr(item, "error", None)
    if isinstance(getattr(error, "message", None), str):
        error.message = error.message.replace(vllm_name, adapter_id)
    return item


async def _renamed_stream(stream: AsyncGenerator[Any, None], vllm_name: str,
                          adapter_id: str) -> AsyncGenerator[Any, None]:
    async for item in stream:
        yield renamed(item, vllm_name, adapter_id)


class ArgusLLMServer(LLMServer):
    """Ray Serve LLM's LLMServer with argus's adapter table, its path rules where the weights
    are read (weights.py), a streamed answer's first token sent at once (token_stream.py), and
    one repair. Starting the vLLM engine
    applies vLLM's logging config (`logging.config.dictConfig`), which closes every handler
    in the process, and closing Serve's MemoryHandler drops its file target. The replica then
    buffers its log records forever, and when the Serve controller restarts, its recovery
    call to the replica (`is_allocated` reads that target's file name) raises, so the
    controller replaces a healthy replica and the model is down for a cold start. Seen in
    argus's zero-disruption e2e with Ray 2.60 + vLLM 0.32."""

    async def __init__(self, llm_config: LLMConfig | dict[str, Any], **kwargs: Any) -> None:
        constructed = time.time()
        # model_server.build_model_app binds the LLMConfig as the dict argusd rendered (its build
        # does not import LLMConfig: ray_build.py); it is validated here, where vLLM is imported.
        if isinstance(llm_config, dict):
            llm_config = LLMConfig.model_validate(llm_config)
        # LoRA adapters (a model whose spec has `adapters:`): the table argusd sends as
        # user_config, and what this replica's vLLM holds, by public id.
        self._adapters: dict[str, AdapterEntry] = {}
        self._loaded: dict[str, LoadedAdapter] = {}
        self._adapter_lock = asyncio.Lock()
        # The one model id this server's vLLM serves (Ray passes it as served_model_name).
        self._served_id = llm_config.model_id
        # The model folder, checked as opened just before vLLM reads it; a folder that leads
        # out of its owner's roots fails the replica with the reason and starts no engine.
        self._owner = Owner.from_env(os.environ)
        source = llm_config.model_loading_config.model_source
        if isinstance(source, str):
            ray_private.serve_from_folder(llm_config, check_model_folder(source, self._owner))
            # The folder is local and checked: no node initialization task when the replica's
            # placement group is on its own node (ray_private.OneNodeInit).
            ray_private.skip_node_init_on_one_node(llm_config)
        # vLLM reads adapters only from copies in this replica's own folder (weights.py).
        self._copies = tempfile.mkdtemp(prefix="argus-adapters-")
        atexit.register(shutil.rmtree, self._copies, True)
        saved = serve_log_targets()
        engine_begun = time.time()
        try:
            await super().__init__(llm_config, **kwargs)   # starts vLLM's engine
        finally:
            restore_serve_log_targets(saved)
        log_replica_start(constructed, engine_begun)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve applies a new adapter table in place: nothing restarts. Adapters load on their
        first request; one that left the table is unloaded."""
        table = (user_config or {}).get("adapters") or {}
        self._adapters = {adapter_id: AdapterEntry.of(entry) for adapter_id, entry in table.items()}
        async with self._adapter_lock:
            for gone in [a for a in self._loaded if a not in self._adapters]:
                await self._unload(gone)

    async def _maybe_resolve_lora_from_multiplex(self) -> None:
        """Ray's version loads adapters from cloud storage by id; argus's come from the table."""
        adapter_id = serve.get_multiplexed_model_id()
        if adapter_id:
            await self._load(adapter_id)

    async def _load(self, adapter_id: str) -> str:
        """The vLLM name of the adapter's current weights, loaded (again) when its generation
        changed or its folder did (new weights written into it, or swapped): each time the
        folder is checked and copied, and vLLM loads the copy under a name of its own."""
        wanted = self._adapters.get(adapter_id)
        if wanted is None:
            raise ray_private.openai_error(404, f'The model "{adapter_id}" does not exist on this base model.')
        async with self._adapter_lock:
            stamp = await asyncio.to_thread(adapter_stamp, wanted.path)
            loaded = self._loaded.get(adapter_id)
            if loaded is not None and (loaded.entry, loaded.stamp) == (wanted, stamp):
                self._loaded[adapter_id] = self._loaded.pop(adapter_id)   # the most recently used
                return loaded.vllm_name
            if loaded is not None:
                await self._unload(adapter_id)
            try:
                if not wanted.user_id:
                    raise WeightsRefusedError("argus did not say whose adapter this is: nothing is loaded")
                copy = await asyncio.to_thread(snapshot_adapter, wanted.path, Owner(wanted.user_id, self._owner.root),
                                               self._copies)
            except WeightsRefusedError as exc:
                raise ray_private.openai_error(403, f'The adapter "{adapter_id}" is not loaded: {exc}') from None
            name = vllm_lora_name(adapter_id, copy.digest)
            try:
                await ray_private.load_adapter(self, name, copy.path)
            except BaseException:
                self._drop_copy(copy.path)
                raise
            self._loaded[adapter_id] = LoadedAdapter(wanted, stamp, name, copy.path)
            while len(self._loaded) > MAX_LOADED_ADAPTERS:
                await self._unload(next(iter(self._loaded)))
            return name

    async def _unload(self, adapter_id: str) -> None:
        """Unload an adapter from vLLM and remove its copy (the caller holds the adapter lock)."""
        loaded = self._loaded.pop(adapter_id)
        await ray_private.unload_adapter(self, loaded.vllm_name)
        self._drop_copy(loaded.copy)

    def _drop_copy(self, path: str) -> None:
        """Remove a copy no loaded adapter reads any more (the same weights share one copy)."""
        if all(loaded.copy != path for loaded in self._loaded.values()):
            shutil.rmtree(path, ignore_errors=True)

    def _batch_output_stream(self, generator: AsyncGenerator[Any, None]) -> AsyncGenerator[list[Any], None]:
        """A streamed answer's first outputs leave at once, the rest in batches of Ray's interval
        (token_stream.py: Ray's Batcher holds the first token for its first interval too)."""
        return first_at_once_then_batched(generator, ray_private.stream_batch_interval_ms(self))

    async def _run_request(self, request: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        """An adapter's request asks vLLM for the adapter's current weights by their vLLM name,
        and its answer names the adapter as the client did. (Ray's _run_request resolves the
        adapter again: a change in between leaves the request asking for a name vLLM no longer
        holds, which vLLM refuses; it never runs on other weights under the old name.)
        A rollout's probe of this model (names.probe_id of its id) is asked as the model
        itself, and answered under its id; an adapter's probe arrives with the adapter's id
        as the multiplexed id, like its own requests."""
        adapter_id = serve.get_multiplexed_model_id()
        if not hasattr(request, "model"):
            return await super()._run_request(request, **kwargs)
        if not adapter_id:
            request.model = served_model(request.model, self._served_id)
            return await super()._run_request(request, **kwargs)
        vllm_name = await self._load(adapter_id)
        request.model = vllm_name
        return _renamed_stream(await super()._run_request(request, **kwargs), vllm_name, adapter_id)
