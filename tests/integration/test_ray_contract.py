"""The contract with Ray's private API, checked against the Ray in the serving venv in
seconds: every private name daemon/replicas/ray_private.py relies on exists with the shape
argus uses, and an untested Ray is refused at import with what to install. No cluster, except
where a check needs one (Serve's auto-init, the node-initialization check's placement groups):
those join the running head (CI's e2e head) or start a local Ray."""
import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from serving_forks import ServingForks

REPO = Path(__file__).resolve().parents[2]
SERVING_PYTHON = REPO / ".venv-serve" / "bin" / "python"
pytestmark = pytest.mark.skipif(not SERVING_PYTHON.exists(),
                                reason="needs .venv-serve (scripts/setup_serving.sh; CI has it)")


# Each check runs as a fresh process of the serving venv, forked from one that imported Ray
# Serve LLM and vLLM once for the file (tests/serving_forks.py): ~140 s -> ~30 s for the file.
_forks = ServingForks(SERVING_PYTHON, REPO, {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                             "RAY_USAGE_STATS_ENABLED": "0"},
                      preload=("ray", "ray.serve", "ray.serve.llm", "vllm"))


@pytest.fixture(scope="module", autouse=True)
def _stop_forks():
    yield
    _forks.close()


def run_in_serving_venv(code: str) -> subprocess.CompletedProcess:
    return _forks.run(code, timeout=420)


def test_every_private_name_exists_with_the_shape_argus_uses():
    result = run_in_serving_venv("""
        import inspect, json
        import ray
        from ray import serve
        from daemon.replicas import ray_private as rp
        from daemon.replicas.frontend import build_frontend
        from daemon.replicas.ingress import ArgusIngress
        init_source = inspect.getsource(rp.OpenAiIngress.__init__)
        out = {
            "ray": ray.__version__,
            "attributes": {a: f"self.{a}" in init_source for a in rp.INGRESS_ATTRIBUTES},
            "methods": {m: inspect.iscoroutinefunction(getattr(rp.OpenAiIngress, m, None))
                        for m in rp.INGRESS_METHODS},
            "handle_keyword": rp.HANDLE_KEYWORD in inspect.signature(serve.get_deployment_handle).parameters,
            "init_keywords": sorted(inspect.signature(rp.OpenAiIngress.__init__).parameters),
            "card": rp.model_card("m", 2048).model_dump()["metadata"]["max_request_context_length"],
            "error": [rp.openai_error(404, "no such model").status_code, type(rp.openai_error(400, "x")).__name__],
            "subclass": issubclass(ArgusIngress, rp.OpenAiIngress),
            "frontend": type(build_frontend()).__name__,
            "configured_lookup": rp.CONFIGURED_LOOKUP[1] in inspect.getsource(
                getattr(rp.OpenAiIngress, rp.CONFIGURED_LOOKUP[0])),
            "adapter_card": rp.model_card("a", 1024, "b").model_dump()["metadata"]["base_model"],
            "model_lookup": rp.MODEL_LOOKUP[1] in inspect.getsource(getattr(rp.OpenAiIngress, rp.MODEL_LOOKUP[0])),
            "app_builder": rp.APP_BUILDER[1] in inspect.getsource(getattr(rp, rp.APP_BUILDER[0])),
            "app": [type(rp.openai_app()).__name__, len(rp.openai_app().user_middleware) > 0],
        }
        # A streaming handle call keeps its assignment future under the name rp.assigned reads,
        # fetches through it first, and cancel() cancels it (withdrawing an unassigned request).
        from ray.serve.handle import DeploymentResponseGenerator, _DeploymentResponseBase
        assignment = f"self.{rp.RESPONSE_ASSIGNMENT}"
        out["assignment"] = [assignment in inspect.getsource(_DeploymentResponseBase.__init__),
                             f"{assignment}.cancel()" in inspect.getsource(_DeploymentResponseBase.cancel),
                             "self._fetch_future_result_async()" in inspect.getsource(
                                 DeploymentResponseGenerator.__anext__),
                             "RequestCancelledError" in inspect.getsource(DeploymentResponseGenerator.__anext__)]
        # The routes argus overrides keep Ray's path parameters (FastAPI reads them from argus's method).
        from ray.llm._internal.serve.core.ingress.ingress import DEFAULT_ENDPOINTS
        out["overridden_routes"] = {m: [list(inspect.signature(getattr(rp.OpenAiIngress, m)).parameters),
                                        list(inspect.signature(getattr(ArgusIngress, m)).parameters)]
                                    for m in rp.INGRESS_METHODS if m in DEFAULT_ENDPOINTS}
        from ray.serve.llm import LLMServer
        from ray.llm._internal.serve.engines.vllm.vllm_engine import VLLMEngine
        from vllm.entrypoints.serve.lora.protocol import UnloadLoRAAdapterRequest
        from vllm.entrypoints.openai.models.serving import OpenAIServingModels
        engine_source = inspect.getsource(VLLMEngine)
        out["lora"] = {
            "server_methods": {m: inspect.iscoroutinefunction(getattr(LLMServer, m, None))
                               for m in rp.LLM_SERVER_METHODS},
            "engine_attributes": {a: f"self.{a}" in engine_source for a in rp.ENGINE_ATTRIBUTES},
            "resolve_lora": list(inspect.signature(VLLMEngine.resolve_lora).parameters),
            "disk_config": sorted(rp.DiskMultiplexConfig.model_fields),
            "unload": inspect.iscoroutinefunction(OpenAIServingModels.unload_lora_adapter)
                      and "lora_requests" in inspect.getsource(OpenAIServingModels.unload_lora_adapter),
            "unload_request": sorted(UnloadLoRAAdapterRequest.model_fields),
            "argus_overrides": sorted(m for m in rp.LLM_SERVER_METHODS
                                      if m in vars(__import__("daemon.replicas.llm_server").replicas.llm_server.ArgusLLMServer)),
            # Ray's _run_request resolves the adapter, then hands the request object itself to the
            # engine (so the vLLM name argus writes into request.model is what vLLM looks up).
            "run_request": list(inspect.signature(LLMServer._run_request).parameters),
            "run_request_order": [inspect.getsource(LLMServer._run_request).find(s) for s in (
                "self._maybe_resolve_lora_from_multiplex()", "getattr(self.engine, engine_method)(request")],
            "server_init": list(inspect.signature(LLMServer.__init__).parameters)[:2],
        }
        # The ErrorResponse rp.is_server_error_response tests for (the front end's canary counts) is
        # the class Ray's ingress tests a model server's first chunk for, whose .error.code it
        # answers as the HTTP status (so a code < 500 is the client's error).
        from ray.llm._internal.serve.core.ingress import ingress as ray_ingress
        process = inspect.getsource(rp.OpenAiIngress._process_llm_request)
        out["error_response"] = [ray_ingress.ErrorResponse is rp.ErrorResponse,
                                 "isinstance(first_chunk, ErrorResponse)" in process,
                                 "status_code=first_chunk.error.code" in process,
                                 rp.ErrorResponse.model_fields["error"].annotation.model_fields["code"].annotation
                                 is int]
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["ray"] == "2.60.0"
    assert out["attributes"] == {"_default_serve_handles": True, "_configured_serve_handles": True,
                                 "_model_cards": True}
    assert out["methods"] == {"_get_model_id": True, "model_data": True}
    assert out["model_lookup"] is True and out["app_builder"] is True
    assert out["app"] == ["FastAPI", True]   # Ray's app, with its middleware
    assert out["overridden_routes"] == {"model_data": [["self", "model"], ["self", "model"]]}
    assert out["handle_keyword"] is True
    assert out["assignment"] == [True, True, True, True]
    assert {"llm_deployments", "model_cards"} <= set(out["init_keywords"])
    assert out["card"] == 2048
    assert out["error"] == [404, "OpenAIHTTPException"]
    assert out["subclass"] is True and out["frontend"] == "Application"
    assert out["configured_lookup"] is True and out["adapter_card"] == "b"
    assert out["error_response"] == [True, True, True, True]
    run_order = out["lora"].pop("run_request_order")
    assert 0 < run_order[0] < run_order[1], run_order
    assert out["lora"] == {"server_methods": {"_maybe_resolve_lora_from_multiplex": True, "_run_request": True},
                           "engine_attributes": {"_oai_models": True},
                           "resolve_lora": ["self", "disk_lora_model"],
                           "disk_config": ["local_path", "lora_assigned_int_id", "max_total_tokens", "model_id"],
                           "unload": True, "unload_request": ["lora_int_id", "lora_name"],
                           "argus_overrides": ["_maybe_resolve_lora_from_multiplex", "_run_request"],
                           "run_request": ["self", "request", "engine_method", "batch_output_stream",
                                           "raw_request_info"],
                           "server_init": ["self", "llm_config"]}


def test_a_streamed_answer_goes_through_argus_batches_at_rays_interval():
    # Ray's _run_request hands a streaming request's engine stream to _batch_output_stream (the
    # method argus's server overrides), and the interval argus reads is Ray's own: 50 ms by
    # default, the LLMConfig's experimental_configs when set. Then Ray's _run_request itself, on
    # an ArgusLLMServer whose engine is a stand-in stream, returns argus's batches: the first at
    # once, where Ray's Batcher (given a minute) holds it.
    result = run_in_serving_venv("""
        import asyncio, inspect, json, types
        from ray.serve.llm import LLMConfig, LLMServer
        from daemon.replicas import ray_private as rp
        from daemon.replicas.llm_server import ArgusLLMServer
        method, call, interval = rp.STREAM_BATCHING

        def server(**experimental):
            config = LLMConfig(model_loading_config={"model_id": "m", "model_source": "/tmp/m"},
                               accelerator_type=None, experimental_configs=experimental)
            s = ArgusLLMServer.__new__(ArgusLLMServer)
            s._llm_config = config
            return s

        async def engine_chat(request, raw_request_info):
            yield "role"
            yield "token 1"
            await asyncio.sleep(3600)

        async def first_batch(s):
            s.engine = types.SimpleNamespace(chat=engine_chat)
            request = types.SimpleNamespace(stream=True)
            with_patch = {"_maybe_add_request_id_to_request": lambda *a: asyncio.sleep(0),
                          "_maybe_resolve_lora_from_multiplex": lambda *a: asyncio.sleep(0)}
            for name, fn in with_patch.items():
                setattr(s, name, fn)
            stream = await LLMServer._run_request(s, request, engine_method="chat", batch_output_stream=True)
            try:
                return await asyncio.wait_for(stream.__anext__(), timeout=5)
            except asyncio.TimeoutError:
                return "held"
            finally:
                await stream.aclose()

        minute = server(stream_batching_interval_ms=60000)
        out = {
            "ray_calls_it": call in inspect.getsource(LLMServer._run_request),
            # a plain method that returns the batches (argus's returns an async generator)
            "ray_method": [not inspect.iscoroutinefunction(getattr(LLMServer, method)),
                           list(inspect.signature(getattr(LLMServer, method)).parameters)],
            "argus_overrides": method in vars(ArgusLLMServer),
            "intervals": [rp.stream_batch_interval_ms(server()), rp.stream_batch_interval_ms(minute),
                          list(inspect.signature(getattr(LLMServer, interval)).parameters)],
            "argus_first_batch": asyncio.run(first_batch(minute)),
            # The interval argus's server batches at is the config's: at 0 every chunk leaves alone.
            "argus_first_batch_at_0": asyncio.run(first_batch(server(stream_batching_interval_ms=0))),
        }
        # Ray's own batcher, on the same server, holds the first token for the interval.
        ArgusLLMServer._batch_output_stream = LLMServer._batch_output_stream
        out["rays_first_batch"] = asyncio.run(first_batch(server(stream_batching_interval_ms=60000)))
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"ray_calls_it": True, "ray_method": [True, ["self", "generator"]], "argus_overrides": True,
                   "intervals": [50, 60000, ["self", "stream"]],
                   "argus_first_batch": ["role", "token 1"], "argus_first_batch_at_0": ["role"],
                   "rays_first_batch": "held"}


def test_an_untested_ray_is_refused_at_import_with_what_to_install():
    result = run_in_serving_venv("""
        import ray
        ray.__version__ = "2.99.0"
        import daemon.replicas.model_server
    """)
    assert result.returncode != 0
    assert ("ImportError: argus's replicas are tested with Ray 2.60.0, and this node runs Ray 2.99.0; "
            "install ray[serve,llm]==2.60.0 on every node") in result.stderr


# The shapes of LLMConfig argus renders (serving/llm_config.build_llm_config): CPU and GPU
# accelerators, tensor-parallel sizes, engine arguments and adapters. The GPU shapes are built
# on this CPU machine by Ray's own builder (no GPU is needed to compute options).
BUILD_SHAPES = """
        import types
        import ray
        # The build worker's runtime_env as Serve starts the build of an app without one (argus
        # sets none), read by both builders; without this, reading it starts a local Ray here.
        ray.get_runtime_context = lambda: types.SimpleNamespace(runtime_env={})
        from daemon.core.spec import ResolvedServingSpec
        from daemon.serving.llm_config import LlmSettings, build_llm_config

        def shape(accelerator, gpus, engine_kwargs=None, adapters=None):
            spec = ResolvedServingSpec(user_id="u", model_id_suffix="m", model_id_prefix="u-202601010000",
                                       model_id="u-202601010000-m", model_source="/private/hf/m", num_replicas=1,
                                       gpus_per_replica=gpus, engine_kwargs=engine_kwargs or {}, adapters=adapters)
            settings = LlmSettings(accelerator, {"enforce_eager": True}, {"VLLM_CPU_KVCACHE_SPACE": "2"}, "/tmp/cache",
                                   "/private")
            return build_llm_config(spec, "m-0123456789abcdef", settings)

        SHAPES = {"cpu x1": shape("cpu", 1), "cpu x2 adapters": shape("cpu", 2, {"max_num_seqs": 8},
                                                                       {"max_rank": 8, "max_loaded": 2}),
                  "H20 x1": shape("H20", 1), "H20 x4": shape("H20", 4, {"max_model_len": 4096}),
                  "A100-80G x2": shape("A100-80G", 2)}
"""


# What makes two builds the same deployment to Serve: name, config, the options the user set, actor
# options, and Serve's deployment version (its hash covers the config, actor options and placement).
DEPLOYMENT_SEEN = """
        from ray.serve._private.version import DeploymentVersion

        def deployment_seen(deployment):
            replica = deployment._replica_config
            version = DeploymentVersion("code", deployment._deployment_config, replica.ray_actor_options,
                                        replica.placement_group_bundles, replica.placement_group_strategy,
                                        replica.placement_group_bundle_label_selector,
                                        replica.placement_group_fallback_strategy, replica.max_replicas_per_node)
            return {"name": deployment.name, "config": deployment._deployment_config.model_dump(mode="json"),
                    "configured": sorted(deployment._deployment_config.user_configured_option_names),
                    "actor": replica.ray_actor_options, "version": hash(version)}
"""


def test_a_model_app_builds_without_vllm_with_the_options_rays_own_builder_gives():
    """build_model_app (Serve runs it in a new worker for every new model app) gives, for every
    shape of LLMConfig argus renders, the deployment Ray Serve LLM's own build_llm_deployment
    gave argus's server class (the call argus made before): the same name, deployment config,
    actor options and placement group (and so the same Serve deployment version), and the same
    LLMConfig once the replica validates it. Its class is named by import path and resolves to
    ArgusLLMServer, an LLMServer. A build in a fresh process imports neither vLLM nor torch
    (the ~10 s it saves on each new app), and what argus does not render is refused."""
    result = run_in_serving_venv(BUILD_SHAPES + DEPLOYMENT_SEEN + """
        import json
        from ray.serve.llm import LLMConfig, LLMServer, build_llm_deployment
        from ray.serve._private.replica import _load_deployment_def_from_import_path
        from daemon.replicas.llm_server import ArgusLLMServer
        from daemon.replicas.model_server import build_model_app
        from daemon.replicas.names import MODEL_SERVER_PREFIX

        def seen(deployment, llm_config):
            replica = deployment._replica_config
            return {**deployment_seen(deployment), "bundles": replica.placement_group_bundles,
                    "strategy": replica.placement_group_strategy, "llm_config": llm_config.model_dump()}

        out = {}
        for name, config in SHAPES.items():
            rays = build_llm_deployment(LLMConfig.model_validate(config), deployment_cls=ArgusLLMServer,
                                        name_prefix=MODEL_SERVER_PREFIX)._bound_deployment
            argus = build_model_app({"llm_config": config})._bound_deployment
            cls = _load_deployment_def_from_import_path(argus._replica_config.deployment_def)
            out[name] = {"same": seen(rays, rays.init_kwargs["llm_config"])
                                 == seen(argus, LLMConfig.model_validate(argus.init_kwargs["llm_config"])),
                         "ray": seen(rays, rays.init_kwargs["llm_config"]),
                         "class": [cls.__module__, cls.__name__, issubclass(cls, LLMServer)]}
        # A deployment an earlier argus built pickled the class by reference under its old home.
        import pickle
        out["old_home"] = pickle.loads(b"cdaemon.replicas.model_server\\nArgusLLMServer\\n.") is cls
        # What argus does not render, each of which changes Ray's options (a server class, a
        # bundle per worker expanded by the tensor-parallel size, a TPU topology's deferred
        # group, the name Ray derives from the model id) is refused, not guessed at.
        cpu = SHAPES["cpu x1"]
        out["refused"] = []
        for odd in ({**cpu, "server_cls": "x:Y"},
                    {**cpu, "placement_group_config": {"bundle_per_worker": {"CPU": 1}, "bundles": [{"CPU": 1}]}},
                    {**cpu, "accelerator_config": {"kind": "tpu", "topology": "2x2"}},
                    {**cpu, "deployment_config": {"num_replicas": 1}}):
            try:
                build_model_app({"llm_config": odd})
                out["refused"].append(None)
            except ValueError as exc:
                out["refused"].append(str(exc).split(": ", 1)[1])
        print(json.dumps(out, default=repr))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("cpu x1", "cpu x2 adapters", "H20 x1", "H20 x4", "A100-80G x2"):
        assert out[name]["same"], (name, out[name]["ray"])
        assert out[name]["class"] == ["daemon.replicas.llm_server", "ArgusLLMServer", True], out[name]
    # What Ray gives (so the comparison compares something): the group, the replica's CPU in bundle 0.
    assert out["H20 x4"]["ray"]["bundles"] == ([{"GPU": 1.0, "accelerator_type:H20": 0.001, "CPU": 1}]
                                               + [{"GPU": 1.0, "accelerator_type:H20": 0.001}] * 3)
    assert out["cpu x2 adapters"]["ray"]["strategy"] == "STRICT_PACK"
    assert out["H20 x1"]["ray"]["name"] == "LLMServer:m-0123456789abcdef"
    assert out["refused"] == ["['server_cls']", "['placement_group_config.bundle_per_worker']",
                              '["accelerator_config other than {\'kind\': \'cpu\'}"]',
                              "['deployment_config without a name']"], out["refused"]
    assert out["old_home"] is True

    fresh = subprocess.run([str(SERVING_PYTHON), "-c", textwrap.dedent(BUILD_SHAPES + """
        import json, sys
        from daemon.replicas.model_server import build_model_app
        apps = [build_model_app({"llm_config": config}) for config in SHAPES.values()]
        print(json.dumps({"vllm": "vllm" in sys.modules, "torch": "torch" in sys.modules, "apps": len(apps)}))
    """)], capture_output=True, text=True, timeout=300, cwd="/tmp",
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"})
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert json.loads(fresh.stdout.strip().splitlines()[-1]) == {"vllm": False, "torch": False, "apps": 5}


def test_the_front_end_builds_without_vllm_as_the_deployment_it_was():
    """build_frontend (Serve runs it in a new worker when the front-end app is new or changed)
    names the front end's class by import path: the same deployment as the class argus built
    before (ArgusIngress in Ray Serve LLM's FastAPI ingress, with argus's answer handler), so the
    same Serve deployment version; the class Serve's loader finds is that ingress; the old name
    still unpickles; and a build in a fresh process imports neither vLLM nor torch."""
    result = run_in_serving_venv(DEPLOYMENT_SEEN + """
        import json, pickle
        from ray import serve
        from ray.serve._private.http_util import ASGIAppReplicaWrapper
        from ray.serve._private.replica import _load_deployment_def_from_import_path
        from daemon.replicas import ingress
        from daemon.replicas.frontend import build_frontend
        from daemon.replicas.names import FRONTEND_DEPLOYMENT
        from daemon.replicas.ray_private import make_fastapi_ingress

        def seen(deployment):
            replica = deployment._replica_config
            return {**deployment_seen(deployment), "init": [list(replica.init_args), replica.init_kwargs]}

        def by_reference(module, name):
            m, n = module.encode(), name.encode()
            return b"\\x80\\x04\\x8c" + bytes([len(m)]) + m + b"\\x8c" + bytes([len(n)]) + n + b"\\x93."

        def by_name(module, dotted):
            found = module
            for part in dotted.split("."):
                found = getattr(found, part)
            return found

        def frozen_app(cls):
            init = cls.__init__
            return init.__closure__[init.__code__.co_freevars.index("frozen_app_or_func")].cell_contents

        # The build argus made before this change, verbatim.
        before = serve.deployment(make_fastapi_ingress(ingress.ArgusIngress, app=ingress.frontend_app()),
                                  name=FRONTEND_DEPLOYMENT, num_replicas=1, max_ongoing_requests=1000).bind()
        now = build_frontend()
        cls = _load_deployment_def_from_import_path(now._bound_deployment._replica_config.deployment_def)
        out = {"same": seen(before._bound_deployment) == seen(now._bound_deployment),
               "before": seen(before._bound_deployment), "app": type(now).__name__,
               "class": [cls is ingress.ArgusFrontend, issubclass(cls, ingress.ArgusIngress),
                         issubclass(cls, ASGIAppReplicaWrapper)],
               # The app serve.ingress froze into the class (its __init__'s closure) answers
               # FrontendAnswer with argus's handler.
               "handler": frozen_app(ingress.ArgusFrontend).exception_handlers.get(ingress.FrontendAnswer)
                          is ingress.answer_response,
               # Every name the pickled class of a front end built by the previous argus refers to
               # in daemon.replicas.frontend (pickletools on a 1b6800c build): by reference, as
               # pickle's STACK_GLOBAL finds them (a dotted name too).
               "old_names": {name: pickle.loads(by_reference("daemon.replicas.frontend", name))
                             is by_name(ingress, name)
                             for name in ("ArgusIngress", "ArgusIngress.model_data", "FrontendAnswer",
                                          "answer_response")},
               # ...and a name the front end never had is still unknown there, not forwarded.
               "unknown_name": not hasattr(__import__("daemon.replicas.frontend").replicas.frontend, "NoSuchName")}
        print(json.dumps(out, default=repr))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["same"], out["before"]
    assert out["before"]["name"] == "ArgusIngress"
    assert {"max_ongoing_requests", "num_replicas"} <= set(out["before"]["configured"]), out["before"]
    assert out["before"]["config"]["max_ongoing_requests"] == 1000
    assert out["app"] == "Application"
    assert out["class"] == [True, True, True]
    assert out["handler"] is True and out["unknown_name"] is True
    assert out["old_names"] == {"ArgusIngress": True, "ArgusIngress.model_data": True, "FrontendAnswer": True,
                                "answer_response": True}

    fresh = subprocess.run([str(SERVING_PYTHON), "-c", textwrap.dedent("""
        import json, sys
        from daemon.replicas.frontend import build_frontend
        app = build_frontend()
        print(json.dumps({"vllm": "vllm" in sys.modules, "torch": "torch" in sys.modules,
                          "serve_llm": "ray.serve.llm" in sys.modules, "app": type(app).__name__}))
    """)], capture_output=True, text=True, timeout=300, cwd="/tmp",
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"})
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert json.loads(fresh.stdout.strip().splitlines()[-1]) == {"vllm": False, "torch": False, "serve_llm": False,
                                                                 "app": "Application"}


def test_llm_server_keeps_serves_log_file_and_checks_the_model_folder_before_the_engine():
    """ArgusLLMServer: starting an engine runs vLLM's real logging set-up (dictConfig closes
    every handler); Serve's buffered handler must still write to its file afterwards, or the
    Serve controller's recovery replaces the replica (the e2e's controller kill). And its model
    folder is checked as the replica opens it: vLLM is given the resolved path, and a folder
    swapped for a symlink into another user's tree fails the replica with the reason before
    any engine is made. Each start writes its start report to Serve's log, and a report that
    breaks never fails the start."""
    result = run_in_serving_venv("""
        import asyncio, json, logging, logging.handlers, tempfile, os
        import cloudpickle
        from vllm.config.logging import LoggingConfig
        from vllm.logger import configure_logging
        from ray.serve.llm import LLMConfig, LLMServer
        from daemon.replicas import ray_private
        from ray.serve.llm import build_llm_deployment
        from daemon.replicas.llm_server import ArgusLLMServer
        from daemon.replicas.model_server import build_model_app
        from daemon.core.replica_contract import OWNER_ENV, ROOT_ENV
        from daemon.core.spec import ResolvedServingSpec
        from daemon.serving.llm_config import LlmSettings, build_llm_config

        root = tempfile.mkdtemp()
        for folder in ("users/alice/m", "users/eve/m"):
            os.makedirs(os.path.join(root, folder))
        os.symlink(os.path.join(root, "users/alice/m"), os.path.join(root, "users/alice/link"))
        os.environ.update({OWNER_ENV: "alice", ROOT_ENV: root})
        path = os.path.join(tempfile.mkdtemp(), "replica.log")
        memory = logging.handlers.MemoryHandler(1, target=logging.FileHandler(path))
        serve_logger = logging.getLogger("ray.serve")
        serve_logger.addHandler(memory)
        serve_logger.setLevel(logging.INFO)
        engines, callbacks = [], []

        class Engine:  # stands in for vLLM's engine; starting it applies vLLM's own logging config
            def __init__(self, config):
                # the path vLLM is given: the engine config's (VLLMEngineConfig.get_initialization_kwargs)
                engines.append(config.get_engine_config().get_initialization_kwargs()["model"])
                callbacks.append(config.callback_config.callback_class is ray_private.OneNodeInit)
            async def start(self): configure_logging(LoggingConfig())
            async def check_health(self): pass

        def rendered(source):
            spec = ResolvedServingSpec("alice", "m", "alice-1", "alice-1-m", source, 1, 1, {})
            return build_llm_config(spec, "m", LlmSettings("cpu", {}, {}, "/tmp/cache", root))

        def config(source):
            # as a replica gets it: built by argus's builder (the LLMConfig as argusd rendered it),
            # pickled to the replica
            app = build_model_app({"llm_config": rendered(source)})
            return cloudpickle.loads(cloudpickle.dumps(app._bound_deployment.init_kwargs["llm_config"]))

        def cached(source):
            # as a deployment built by Ray's own builder holds it (and an earlier argus's: what a
            # replacement replica of such a deployment gets): the engine config derived from the
            # path as written and cached on the LLMConfig, pickled with it
            app = build_llm_deployment(LLMConfig.model_validate(rendered(source)), deployment_cls=LLMServer,
                                       name_prefix="LLMServer:")
            return cloudpickle.loads(cloudpickle.dumps(app._bound_deployment.init_kwargs["llm_config"]))
        out = {"kept": []}
        for cls, built in ((LLMServer, cached), (ArgusLLMServer, config), (ArgusLLMServer, cached)):
            memory.setTarget(logging.FileHandler(path))
            server = cls.__new__(cls)  # Serve awaits the async constructor itself
            asyncio.run(server.__init__(built(os.path.join(root, "users/alice/link")), engine_cls=Engine))
            out["kept"].append(memory.target is not None)
        serve_logger.info("after the engine started")
        memory.flush()
        out["written"] = "after the engine started" in open(path).read()
        # Each start of argus's server wrote its start report into Serve's log, flushed; a report
        # that breaks (psutil not importable) is a warning, and the start goes on.
        from daemon.core.replica_contract import REPLICA_START_MARK, read_replica_start
        from daemon.replicas import llm_server
        start = read_replica_start(open(path).read())
        out["reports"] = [open(path).read().count(REPLICA_START_MARK), start is not None and start.engine_s >= 0]
        import sys
        sys.modules["psutil"] = None
        llm_server.log_replica_start(0.0, 0.0)
        del sys.modules["psutil"]
        memory.flush()
        out["report_broke"] = "argus could not report this replica's start" in open(path).read()
        out["engine_read"] = [p.replace(root, "<root>") for p in engines]
        os.rename(os.path.join(root, "users/alice/m"), os.path.join(root, "users/alice/old"))
        os.symlink(os.path.join(root, "users/eve/m"), os.path.join(root, "users/alice/m"))
        try:
            server = ArgusLLMServer.__new__(ArgusLLMServer)
            asyncio.run(server.__init__(config(os.path.join(root, "users/alice/m")), engine_cls=Engine))
        except Exception as exc:
            out["swapped"] = [type(exc).__name__, str(exc).replace(root, "<root>"), len(engines)]
        out["callbacks"] = callbacks
        out["deployment"] = build_model_app({"llm_config": rendered("/m")})._bound_deployment.name
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # Ray's server loses Serve's log file (the interaction argus repairs: if Ray fixes it, drop
    # the repair); argus's keeps it, whichever builder made its config.
    assert out["kept"] == [False, True, True] and out["written"], out
    # argus's two starts each reported themselves; Ray's own server wrote none.
    assert out["reports"] == [2, True] and out["report_broke"], out
    # Ray's server reads the path as given; argus's gives vLLM the folder it checked (also when
    # the config holds an engine config cached from the path as written), and skips Ray's node
    # initialization task on one node (ray_private.OneNodeInit).
    assert out["engine_read"] == ["<root>/users/alice/link", "<root>/users/alice/m", "<root>/users/alice/m"], out
    assert out["callbacks"] == [False, True, True], out
    assert out["swapped"] == ["WeightsRefusedError", "<root>/users/alice/m leads to <root>/users/eve/m: <root>/users/eve/m "
                              "is in user 'eve''s tree, not alice's; only alice's own files and shared models are served",
                              3], out  # no fourth engine
    assert out["deployment"] == "LLMServer:m", out  # argus and its tests find models by this name


def test_argus_llm_server_serves_each_adapters_weights_under_a_name_of_their_own():
    """ArgusLLMServer's adapter path inside Ray's real LLMServer (its _run_request and request
    flow), with an engine that stands in for vLLM's as Ray's VLLMEngine drives it (resolve_lora
    by name from a local path; the request's model picks the adapter). Weights written into the
    same folder are a new name and the old one is unloaded; vLLM only ever reads the replica's
    copies; a folder swapped for a symlink to another user's adapter is refused with 403 and
    the reason, and nothing stays loaded. The whole path on the real vLLM: the e2e."""
    result = run_in_serving_venv("""
        import asyncio, json, os, tempfile, types
        import ray.serve
        from ray.serve.llm import LLMConfig
        from daemon.replicas.llm_server import ArgusLLMServer
        from daemon.core.replica_contract import OWNER_ENV, ROOT_ENV

        root = tempfile.mkdtemp()
        for folder, weights in (("users/bob/ad", b"v1"), ("users/eve/ad", b"eve")):
            os.makedirs(os.path.join(root, folder))
            open(os.path.join(root, folder, "adapter_model.safetensors"), "wb").write(weights)
        os.makedirs(os.path.join(root, "users/alice/m"))
        os.environ.update({OWNER_ENV: "alice", ROOT_ENV: root})
        adapter = os.path.join(root, "users/bob/ad")

        class Models:
            def __init__(self): self.lora_requests = {}
            async def unload_lora_adapter(self, request): self.lora_requests.pop(request.lora_name)

        class Engine:
            def __init__(self, config): self._oai_models, self.read = Models(), []
            async def start(self): pass
            async def check_health(self): pass
            async def resolve_lora(self, disk):
                self.read.append(disk.local_path)
                with open(os.path.join(disk.local_path, "adapter_model.safetensors"), "rb") as f:
                    self._oai_models.lora_requests[disk.model_id] = f.read().decode()
            async def completions(self, request, raw_request_info):
                # vLLM serves its own model id ("m") and the LoRA names it holds; it refuses any other
                if request.model != "m" and request.model not in self._oai_models.lora_requests:
                    yield types.SimpleNamespace(model=request.model, text="refused: unknown model")
                    return
                yield types.SimpleNamespace(model=request.model, text=self._oai_models.lora_requests.get(request.model, "base"))

        current = ["bob-1-ad"]
        ray.serve.get_multiplexed_model_id = lambda: current[0]   # Serve's routing sets it per request
        server = ArgusLLMServer.__new__(ArgusLLMServer)
        config = LLMConfig(model_loading_config={"model_id": "m", "model_source": os.path.join(root, "users/alice/m")})

        async def main():
            await server.__init__(config, engine_cls=Engine)
            await server.reconfigure({"adapters": {"bob-1-ad": {"path": adapter, "generation": 1, "user_id": "bob"}}})
            async def ask(model=None):
                try:
                    stream = await server.completions(types.SimpleNamespace(model=model or current[0], stream=False))
                    return [(item.model, item.text) async for item in stream]
                except Exception as exc:
                    return [type(exc).__name__, getattr(exc, "status_code", None), str(getattr(exc, "message", exc)).replace(root, "<root>")]
            out = {"first": await ask(), "again": await ask()}
            # A rollout's probes: the adapter's (multiplexed id: the adapter), the model's own (no
            # multiplexed id), another model's (left as it is: vLLM refuses it).
            out["adapter_probe"] = await ask("bob-1-ad@next")
            current[0] = ""
            out["own_probe"], out["other_probe"] = await ask("m@next"), await ask("x@next")
            current[0] = "bob-1-ad"
            names = list(server.engine._oai_models.lora_requests)
            open(os.path.join(adapter, "adapter_model.safetensors"), "wb").write(b"v2")
            out["changed"] = await ask()
            out["names"] = [names, list(server.engine._oai_models.lora_requests)]
            out["copies_after_change"] = len(os.listdir(server._copies))
            os.rename(adapter, adapter + "-old")
            os.symlink(os.path.join(root, "users/eve/ad"), adapter)
            out["swapped"] = await ask()
            out["loaded_after_swap"] = list(server.engine._oai_models.lora_requests)
            out["read_from_copies"] = all(p.startswith(server._copies) for p in server.engine.read)
            out["reads"] = len(server.engine.read)
            out["copies_after_swap"] = os.listdir(server._copies)
            table = {}
            for i in range(18):
                folder = os.path.join(root, f"users/bob/n{i}")
                os.makedirs(folder)
                open(os.path.join(folder, "adapter_model.safetensors"), "wb").write(f"n{i}".encode())
                open(os.path.join(folder, "README.md"), "w").write("not read by vLLM")
                table[f"bob-1-n{i}"] = {"path": folder, "generation": 1, "user_id": "bob"}
            await server.reconfigure({"adapters": table})
            for i in range(18):
                current[0] = f"bob-1-n{i}"
                await ask()
            copies = os.listdir(server._copies)
            out["bounded"] = [len(server._loaded), len(server.engine._oai_models.lora_requests), len(copies),
                              "bob-1-n0" in server._loaded, "bob-1-n17" in server._loaded,
                              sorted({f for c in copies for f in os.listdir(os.path.join(server._copies, c))})]
            await server.reconfigure({"adapters": {}})
            out["after_empty_table"] = [os.listdir(server._copies), list(server.engine._oai_models.lora_requests)]
            return out
        print(json.dumps(asyncio.run(main())))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["first"] == out["again"] == out["adapter_probe"] == [["bob-1-ad", "v1"]], out  # named as asked
    assert out["own_probe"] == [["m", "base"]], out          # vLLM is asked for (and answers as) its own id
    assert out["other_probe"] == [["x@next", "refused: unknown model"]], out
    assert out["changed"] == [["bob-1-ad", "v2"]], out
    (old,), (new,) = out["names"]
    assert old.startswith("bob-1-ad@") and new.startswith("bob-1-ad@") and old != new, out   # old one unloaded
    kind, code, message = out["swapped"]
    assert (kind, code) == ("OpenAIHTTPException", 403), out
    assert "<root>/users/eve/ad is in user 'eve'" in message, out
    assert out["loaded_after_swap"] == [] and out["reads"] == 2 and out["read_from_copies"], out
    # Copies: the old weights' copy goes with them; a refused swap leaves none; at most 16 adapters
    # stay loaded (the least recently used goes, with its copy); only the files vLLM reads are copied.
    assert out["copies_after_change"] == 1 and out["copies_after_swap"] == [], out
    assert out["bounded"] == [16, 16, 16, False, True, ["adapter_model.safetensors"]], out
    assert out["after_empty_table"] == [[], []], out


def test_argus_reads_where_a_replicas_log_is_as_serve_reports_it_and_asks_rays_log_api_for_it():
    """Serve's status names each replica's node and log file (ReplicaDetails, made here by Ray's
    own schema classes and serialized as its REST answer is); argus reads the newest running
    replica's as a ReplicaLog, and asks Ray's log API with the query parameters its handler
    reads (the e2e reads a real replica's log this way). Each replica's id, state, node and pid
    read back too, as the API shows them."""
    result = run_in_serving_venv("""
        import inspect, json
        from ray.dashboard.modules.state.state_head import StateHead
        from ray.serve.schema import (ApplicationDetails, ApplicationStatus, DeploymentDetails, DeploymentSchema,
                                      ReplicaDetails, ServeInstanceDetails)
        from ray.serve._private.common import DeploymentStatus, DeploymentStatusTrigger, ReplicaState
        from daemon.serving import observe

        replicas = [ReplicaDetails(replica_id="r1", state=ReplicaState.RUNNING, start_time_s=100.0, node_id="n1",
                                   node_ip="10.0.0.1", pid=11, log_file_path="/serve/replica_llm-k_LLMServer:k_r1.log"),
                    ReplicaDetails(replica_id="r2", state=ReplicaState.RUNNING, start_time_s=160.0, node_id="n2",
                                   log_file_path="/serve/replica_llm-k_LLMServer:k_r2.log")]
        deployment = DeploymentDetails(
            name="LLMServer:k", status=DeploymentStatus.HEALTHY,
            status_trigger=DeploymentStatusTrigger.CONFIG_UPDATE_COMPLETED, message="",
            deployment_config=DeploymentSchema(name="LLMServer:k"), target_num_replicas=2, required_resources={},
            replicas=replicas)
        app = ApplicationDetails(name="llm-k", route_prefix=None, docs_path=None, status=ApplicationStatus.RUNNING,
                                 message="", last_deployed_time_s=0, deployed_app_config=None, source="declarative",
                                 deployments={"LLMServer:k": deployment}, external_scaler_enabled=False)
        answer = json.loads(json.dumps(ServeInstanceDetails(proxies={}, applications={"llm-k": app})
                                       ._get_user_facing_json_serializable_dict(exclude_unset=True)))
        seen = observe.observed_from_status(answer).apps["llm-k"].deployments["LLMServer:k"]
        handler = inspect.getsource(StateHead.get_logs)
        # The file name argus sends, as the node's log agent resolves it in its Ray log folder.
        import pathlib, tempfile, urllib.parse
        from ray.dashboard.modules.log.log_agent import LogAgentV1Grpc
        from daemon.serving.client import replica_log_path
        path = replica_log_path(seen.newest_running_log.node_id, seen.newest_running_log.log_file, 500)
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
        logs = pathlib.Path(tempfile.mkdtemp())
        (logs / "serve").mkdir()
        (logs / "serve" / "replica_llm-k_LLMServer:k_r2.log").write_text("x")
        resolved = str(LogAgentV1Grpc._resolve_filename(logs, query["filename"]).relative_to(logs))
        print(json.dumps({"log": [seen.newest_running_log.node_id, seen.newest_running_log.log_file],
                          "replicas": [r.to_dict() for r in seen.replicas],
                          "route": '@routes.get("/api/v0/logs/{media_type}"' in handler and path.startswith("/api/v0/logs/file?"),
                          "params": {p: f'req.query.get("{p}"' in handler for p in query},
                          "query": query, "resolved": resolved}))
    """)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["log"] == ["n2", "/serve/replica_llm-k_LLMServer:k_r2.log"]
    # What the API shows of each replica (daemon/api/service.py replica_states), read the same way.
    assert out["replicas"] == [{"replica_id": "r1", "state": "RUNNING", "node_ip": "10.0.0.1", "pid": 11},
                               {"replica_id": "r2", "state": "RUNNING", "node_ip": None, "pid": None}]
    assert out["route"] and out["params"] == {"node_id": True, "filename": True, "lines": True, "timeout": True}
    assert out["query"]["node_id"] == "n2" and out["resolved"] == "serve/replica_llm-k_LLMServer:k_r2.log"


def test_the_serve_config_argus_writes_is_valid_for_ray_and_reads_back_as_written():
    """serve_config against Ray's own code: the whole config a plan puts (a model app with its
    adapter table, a plain model app, the front end with routes to both, the lease, another team's
    app) validates as Ray's ServeDeploySchema and each LLMConfig as Ray's LLMConfig; Serve's status
    answer is then made by Ray's own schema classes the way its controller makes it (each app
    checkpointed as `model_dump(exclude_unset=True)`, the answer as ServeInstanceDetails'
    user-facing dict), and argus reads every app back as the object it wrote, so the next plan
    applies nothing. An app with the import path an older argus wrote (daemon.frontend) reads back
    as other than what argus wants, so it is redeployed on the new path. And argus's status enums
    are Ray's. A rollout's config (two apps of one model, probe entries, the front end's own 503
    entry) validates and reads back the same way."""
    result = run_in_serving_venv("""
        import dataclasses, json
        from ray.serve.llm import LLMConfig
        from ray.serve.schema import (ApplicationDetails, ApplicationStatus, DeploymentDetails, DeploymentSchema,
                                      ReplicaDetails, ServeDeploySchema, ServeInstanceDetails)
        from ray.serve._private.common import DeploymentStatus, DeploymentStatusTrigger, ReplicaState
        from daemon.config import Config
        from daemon.core.adapters import AdapterInfo
        from daemon.core.spec import ResolvedServingSpec
        from daemon.serving import observe
        from daemon.serving.desired import DesiredModel
        from daemon.serving.llm_config import LlmSettings
        from daemon.serving.plan import ServeSettings, plan
        from daemon.serving.serve_config import FrontendApp, LeaseApp, ModelApp, OtherApp

        config = Config()
        settings = dataclasses.replace(LlmSettings.from_config(config), accelerator_type="cpu")
        serve = ServeSettings.from_config(config)
        base_spec = ResolvedServingSpec("alice", "smollm2", "alice-1", "alice-1-smollm2", "/private/hf/m", 1, 1,
                                        {"max_model_len": 2048},
                                        adapters={"max_rank": 8, "max_loaded": 2, "users": ["bob"]})
        plain_spec = ResolvedServingSpec("alice", "plain", "alice-1", "alice-1-plain", "/private/hf/p", 2, 1, {})
        auto_spec = ResolvedServingSpec("alice", "auto", "alice-1", "alice-1-auto", "/private/hf/a", 0, 1, {},
                                        autoscaling={"min_replicas": 0, "max_replicas": 2,
                                                     "target_ongoing_requests": 4, "scale_down_delay_s": 60})
        adapter_spec = ResolvedServingSpec("bob", "tutor", "bob-1", "bob-1-tutor", "/private/users/bob/t", 0, 0, {},
                                           base_model="alice-1-smollm2")
        models = [DesiredModel("k-base", base_spec.model_id, "RUNNING", 1, base_spec, was_running=True),
                  DesiredModel("k-plain", plain_spec.model_id, "RUNNING", 1, plain_spec, was_running=True),
                  DesiredModel("k-auto", auto_spec.model_id, "RUNNING", 1, auto_spec, was_running=True),
                  DesiredModel("k-ad", adapter_spec.model_id, "DEPLOYING", 1, adapter_spec,
                               adapter=AdapterInfo(8, None))]
        foreign = {"name": "team-b", "route_prefix": "/team-b", "import_path": "their.module:app",
                   "deployments": [{"name": "D", "num_replicas": 3}]}
        foreign_status = {"applications": {"team-b": {"status": "RUNNING", "message": "",
                                                      "deployed_app_config": foreign, "deployments": {}}}}
        lease = {"holder": "h:1", "epoch": 1, "beat": 1}
        def deployment(name, replicas):
            return DeploymentDetails(
                name=name, status=DeploymentStatus.HEALTHY,
                status_trigger=DeploymentStatusTrigger.CONFIG_UPDATE_COMPLETED, message="",
                deployment_config=DeploymentSchema(name=name), target_num_replicas=replicas, required_resources={},
                replicas=[ReplicaDetails(replica_id=f"{name}-{i}", state=ReplicaState.RUNNING, start_time_s=0)
                          for i in range(replicas)])

        def answer(apps):
            details = {}
            for app in apps:
                checkpoint = app.model_dump(exclude_unset=True)   # what Serve's controller keeps and reports
                details[app.name] = ApplicationDetails(
                    name=app.name, route_prefix=app.route_prefix, docs_path=None, status=ApplicationStatus.RUNNING,
                    message="", last_deployed_time_s=0, deployed_app_config=checkpoint, source="declarative",
                    deployments={d.name: deployment(d.name, d.num_replicas if isinstance(d.num_replicas, int)
                                                    else 0) for d in app.deployments},
                    external_scaler_enabled=False)
            return json.loads(json.dumps(ServeInstanceDetails(proxies={}, applications=details)
                                         ._get_user_facing_json_serializable_dict(exclude_unset=True)))

        # Serve takes each config the plan puts until the plan has nothing left to apply.
        observed, puts = observe.observed_from_status(foreign_status), 0
        while puts < 4:
            step = plan(models, observed, capacity=None, settings=settings, serve=serve, lease=lease)
            if step.apply is None:
                break
            desired, written, puts = step.apply, step.apply.to_json(), puts + 1
            for app in written["applications"]:
                if "llm_config" in app.get("args", {}):
                    LLMConfig.model_validate(app["args"]["llm_config"])
            observed = observe.observed_from_status(answer(ServeDeploySchema.model_validate(written).applications))
        kinds = {name: type(app.config).__name__ for name, app in observed.apps.items()}
        read_back = {name: observed.apps[name].config == app for name, app in desired.by_name().items()}
        running = {name: {d: o.running_replicas for d, o in app.deployments.items()}
                   for name, app in observed.apps.items()}
        statuses = {name: [app.status, *(d.status for d in app.deployments.values())]
                    for name, app in observed.apps.items()}
        routes = [(r.model_id, r.app, r.base_model) for r in observed.frontend().routes]
        adapters = {k: v.generation for k, v in observed.model_app("k-base").adapters.items()}
        # Serve's own merge of the autoscaled app's override into the deployment the builder made
        # from the LLMConfig (num_replicas placeholder in it): the deployment Serve would run.
        from ray.serve._private.application_state import override_deployment_info
        from ray.serve._private.deployment_info import DeploymentInfo
        from ray.serve._private.config import DeploymentConfig, ReplicaConfig
        from ray.serve.schema import ServeApplicationSchema
        from daemon.serving.llm_config import ARGS_NUM_REPLICAS
        auto_app = next(a for a in written["applications"] if a["name"] == "llm-k-auto")
        code_config = DeploymentConfig(num_replicas=ARGS_NUM_REPLICAS)   # what build_model_app's options give
        info = DeploymentInfo(deployment_config=code_config,
                              replica_config=ReplicaConfig.create(lambda: None), start_time_ms=0, deployer_job_id="")
        merged = override_deployment_info({"LLMServer:k-auto": info}, ServeApplicationSchema.model_validate(auto_app))
        merged_config = merged["LLMServer:k-auto"].deployment_config
        autoscaled = {"min": merged_config.autoscaling_config.min_replicas,
                      "max": merged_config.autoscaling_config.max_replicas,
                      "initial": merged_config.autoscaling_config.initial_replicas,
                      "to_zero": merged_config.autoscaling_config.downscale_to_zero_delay_s,
                      "target": merged_config.autoscaling_config.get_target_ongoing_requests()}

        # A rollout: k-base's generation 2 starts beside generation 1 (probe entries for it and its
        # adapter), and a new model has no serving generation yet (the front end's own 503).
        base2 = dataclasses.replace(base_spec, engine_kwargs={"max_model_len": 1024})
        new_spec = ResolvedServingSpec("alice", "new", "alice-1", "alice-1-new", "/private/hf/n", 1, 1, {})
        rolling = [DesiredModel("k-base", base2.model_id, "QUEUED", 2, base2, was_running=True, applied_generation=1),
                   models[1], models[2], DesiredModel("k-ad", adapter_spec.model_id, "RUNNING", 1, adapter_spec),
                   DesiredModel("k-new", new_spec.model_id, "QUEUED", 1, new_spec)]
        surge = plan(rolling, observed, capacity=None, settings=settings, serve=serve, lease=lease).apply
        surge_written = surge.to_json()
        surge_seen = observe.observed_from_status(answer(ServeDeploySchema.model_validate(surge_written).applications))
        rollout = {"read_back": {name: surge_seen.apps[name].config == app for name, app in surge.by_name().items()},
                   "routes": sorted([r.model_id, r.app, r.probe, r.unavailable.status if r.unavailable else None]
                                    for r in surge_seen.frontend().routes)}

        old = json.loads(json.dumps(written).replace("daemon.replicas.model_server:build_model_app",
                                                     "daemon.frontend:build_model_app"))
        stale = observe.observed_from_status(answer(ServeDeploySchema.model_validate(old).applications))
        redeployed = plan(models, stale, capacity=None, settings=settings, serve=serve, lease=lease).apply
        print(json.dumps({
            "kinds": kinds, "read_back": read_back, "running": running, "statuses": statuses,
            "puts": puts, "routes": routes, "adapters": adapters, "rollout": rollout, "autoscaled": autoscaled,
            "stale_is_desired": stale.apps["llm-k-base"].config == desired.by_name()["llm-k-base"],
            "redeployed_paths": sorted({a["import_path"] for a in (redeployed.to_json()["applications"]
                                                                    if redeployed else [])}),
            "enums": {
                "app": [sorted(s.value for s in ApplicationStatus),
                        sorted(s.value for s in observe.AppStatus if s != observe.AppStatus.UNKNOWN)],
                "deployment": [sorted(s.value for s in DeploymentStatus),
                               sorted(s.value for s in observe.DeploymentStatus
                                      if s != observe.DeploymentStatus.UNKNOWN)],
                "replica": [sorted(s.value for s in ReplicaState),
                            sorted(s.value for s in observe.ReplicaState if s != observe.ReplicaState.UNKNOWN)]},
        }))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["kinds"] == {"argus": "FrontendApp", "argus-lease": "LeaseApp", "llm-k-base": "ModelApp",
                            "llm-k-plain": "ModelApp", "llm-k-auto": "ModelApp", "team-b": "OtherApp"}
    assert out["read_back"] == {"argus": True, "argus-lease": True, "llm-k-base": True, "llm-k-plain": True,
                                "llm-k-auto": True, "team-b": True}
    # Serve lays argus's autoscaling_config over the placeholder count of the LLMConfig's args.
    assert out["autoscaled"] == {"min": 0, "max": 2, "initial": None, "to_zero": 60.0, "target": 4.0}
    assert out["running"]["llm-k-plain"] == {"LLMServer:k-plain": 2}
    assert out["statuses"]["llm-k-base"] == ["RUNNING", "HEALTHY"]
    assert out["puts"] == 2   # the models, then the front end routing the ones Serve runs; then nothing
    assert out["routes"] == [["alice-1-auto", "llm-k-auto", None],
                             ["alice-1-plain", "llm-k-plain", None], ["alice-1-smollm2", "llm-k-base", None],
                             ["bob-1-tutor", "llm-k-base", "alice-1-smollm2"]]
    assert out["adapters"] == {"bob-1-tutor": 1}
    assert out["stale_is_desired"] is False
    assert set(out["rollout"]["read_back"]) >= {"llm-k-base", "llm-k-base-b", "llm-k-new", "argus"}
    assert all(out["rollout"]["read_back"].values())
    assert out["rollout"]["routes"] == [["alice-1-auto", "llm-k-auto", False, None],
                                        ["alice-1-new", "", False, 503], ["alice-1-plain", "llm-k-plain", False, None],
                                        ["alice-1-smollm2", "llm-k-base", False, None],
                                        ["alice-1-smollm2@next", "llm-k-base-b", True, None],
                                        ["bob-1-tutor", "llm-k-base", False, None],
                                        ["bob-1-tutor@next", "llm-k-base-b", True, None]]
    assert "daemon.replicas.model_server:build_model_app" in out["redeployed_paths"]
    assert "daemon.frontend:build_model_app" not in out["redeployed_paths"]
    for ray_names, argus_names in out["enums"].values():
        assert ray_names == argus_names


def test_the_import_paths_argus_writes_name_builders_that_exist():
    result = run_in_serving_venv("""
        import importlib, json
        from daemon.replicas import names
        out = {}
        for path in (names.BUILD_MODEL_APP, names.BUILD_FRONTEND, names.BUILD_LEASE):
            module, attr = path.split(":")
            out[path] = callable(getattr(importlib.import_module(module), attr, None))
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "daemon.replicas.model_server:build_model_app": True, "daemon.replicas.frontend:build_frontend": True,
        "daemon.replicas.lease:build_lease": True}


def test_argus_starts_a_new_generation_exactly_where_serve_would_rebuild_the_app():
    """Serve rebuilds an app, stopping its replicas before new ones run, when the app's code
    version changes (Ray 2.60 deploy_utils.get_app_code_version: import path, runtime_env, args,
    and the deployments' autoscaling policies); other per-deployment overrides (a count, a range)
    it applies in place. argus's rollout.same_engine must say "same replicas" exactly when Ray's
    own code version stays: else a change argus applies in place is an outage (a switch between
    a fixed count and autoscaling was: ~100 s with no replica, bench/wake_bench.py)."""
    result = run_in_serving_venv("""
        import dataclasses, itertools, json
        from ray.serve.schema import ServeApplicationSchema
        from ray.serve._private.deploy_utils import get_app_code_version
        from daemon.config import Config
        from daemon.core.spec import ResolvedServingSpec
        from daemon.serving.llm_config import LlmSettings, ModelDeployment
        from daemon.serving.rollout import same_engine
        from daemon.serving.serve_config import ModelApp, render_app

        settings = dataclasses.replace(LlmSettings.from_config(Config()), accelerator_type="cpu")
        fixed = ResolvedServingSpec("alice", "a", "alice-1", "alice-1-a", "/private/hf/m", 1, 1, {})
        def auto(low, high, target=16):
            return dataclasses.replace(fixed, num_replicas=low, autoscaling={
                "min_replicas": low, "max_replicas": high, "target_ongoing_requests": target,
                "scale_down_delay_s": 300})
        specs = {"fixed 1": fixed, "fixed 2": dataclasses.replace(fixed, num_replicas=2),
                 "auto 0-1": auto(0, 1), "auto 1-2": auto(1, 2), "auto 0-1 target 4": auto(0, 1, 4),
                 "engine": dataclasses.replace(fixed, engine_kwargs={"max_num_seqs": 8})}
        deployments = {name: ModelDeployment.of("k", spec, settings) for name, spec in specs.items()}
        version = {name: get_app_code_version(ServeApplicationSchema(**render_app(ModelApp.of(dep, "llm-k"))))
                   for name, dep in deployments.items()}
        out = [[a, b, version[a] == version[b], same_engine(deployments[a], deployments[b])]
               for a, b in itertools.combinations(specs, 2)]
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    pairs = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(a, b) for a, b, ray_same, argus_same in pairs if ray_same != argus_same] == [], pairs
    # The table is not trivial: both answers occur.
    assert {ray_same for *_, ray_same, _ in pairs} == {True, False}
    assert ["fixed 1", "fixed 2", True, True] in pairs and ["fixed 1", "auto 0-1", False, False] in pairs


def test_the_drain_bound_is_what_serve_runs_and_a_change_of_it_restarts_no_replica():
    """serving.serve.drain_timeout_s against Ray's own code: the model deployment and the front
    end argus renders validate as Ray's ServeDeploySchema; Serve's own override_deployment_info
    lays the bound over what the builder's code gives (Ray's 20 s / 2 s), for a fixed and an
    autoscaled model and the front end; and between two renders differing only in the bound,
    Ray's DeploymentVersion (how Serve's controller decides) restarts no actor: the new bound
    applies in place (a timeout change is controller-side, NeedsReconfigure), and the deployment
    is updated (the versions differ). A change of the code does restart, as a check that the
    comparison can say so."""
    result = run_in_serving_venv("""
        import dataclasses, json
        from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema
        from ray.serve._private.application_state import override_deployment_info
        from ray.serve._private.config import DeploymentConfig, ReplicaConfig
        from ray.serve._private.constants import (DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_S,
                                                  DEFAULT_GRACEFUL_SHUTDOWN_WAIT_LOOP_S)
        from ray.serve._private.deployment_info import DeploymentInfo
        from ray.serve._private.utils import DeploymentOptionUpdateType
        from ray.serve._private.version import DeploymentVersion
        from daemon.config import Config
        from daemon.core.spec import ResolvedServingSpec
        from daemon.serving.llm_config import ARGS_NUM_REPLICAS, LlmSettings, ModelDeployment
        from daemon.serving.serve_config import FrontendApp, HttpOptions, ModelApp, ServeConfig, render_app

        settings = dataclasses.replace(LlmSettings.from_config(Config()), accelerator_type="cpu")
        fixed = ResolvedServingSpec("alice", "a", "alice-1", "alice-1-a", "/private/hf/m", 2, 1, {})
        auto = ResolvedServingSpec("alice", "z", "alice-1", "alice-1-z", "/private/hf/m", 0, 1, {},
                                   autoscaling={"min_replicas": 0, "max_replicas": 2, "target_ongoing_requests": 2,
                                                "scale_down_delay_s": 60})

        def apps(drain_s):
            s = dataclasses.replace(settings, drain_timeout_s=drain_s)
            return [ModelApp.of(ModelDeployment.of("k-a", fixed, s), "llm-k-a"),
                    ModelApp.of(ModelDeployment.of("k-z", auto, s), "llm-k-z"), FrontendApp.of([], 2, drain_s)]

        def merged(app):
            raw = render_app(app)
            schema = ServeApplicationSchema.model_validate(raw)
            name = raw["deployments"][0]["name"]
            code = DeploymentConfig(num_replicas=ARGS_NUM_REPLICAS)   # what the builders' options give
            info = DeploymentInfo(deployment_config=code, replica_config=ReplicaConfig.create(lambda: None),
                                  start_time_ms=0, deployer_job_id="")
            return override_deployment_info({name: info}, schema)[name].deployment_config

        ServeDeploySchema.model_validate(ServeConfig(HttpOptions("127.0.0.1", 8000, "HeadOnly"),
                                                     tuple(apps(600.0))).to_json())
        before, after = [merged(a) for a in apps(600.0)], [merged(a) for a in apps(90.0)]
        version = lambda config, code="v1": DeploymentVersion(code, config, {"num_cpus": 0})
        fields = DeploymentConfig.model_fields
        print(json.dumps({
            "ray_default": [DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_S, DEFAULT_GRACEFUL_SHUTDOWN_WAIT_LOOP_S],
            "bound": [[c.graceful_shutdown_timeout_s, c.graceful_shutdown_wait_loop_s] for c in before + after],
            "update_types": {f: DeploymentOptionUpdateType(fields[f].json_schema_extra["update_type"]).value
                             for f in ("graceful_shutdown_timeout_s", "graceful_shutdown_wait_loop_s")},
            "restart": [version(b).requires_actor_restart(version(a)) for b, a in zip(before, after)],
            "updated": [version(b) != version(a) for b, a in zip(before, after)],
            "code_change_restarts": version(before[0]).requires_actor_restart(version(before[0], "v2")),
        }))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["ray_default"] == [20, 2]   # what a replica got before argus set the bound
    assert out["bound"] == [[600.0, 2.0]] * 3 + [[90.0, 2.0]] * 3
    assert out["update_types"] == {"graceful_shutdown_timeout_s": "NeedsReconfigure",
                                   "graceful_shutdown_wait_loop_s": "NeedsActorReconfigure"}
    assert out["restart"] == [False, False, False]
    assert out["updated"] == [True, True, True]
    assert out["code_change_restarts"] is True


def test_a_replica_on_one_node_skips_ray_serve_llms_node_initialization_task():
    """Ray's own VLLMEngine.start, up to the engine config (stopped there): with argus's callback
    (ray_private.skip_node_init_on_one_node, what ArgusLLMServer applies before it starts) and a
    placement group on this node, Ray's node initialization (a Ray task per node that imports
    torch and transformers, ~16 s of a cold start, to find a local folder needs no download) does
    not run; with Ray's default callback it does (the control), and with a placement group on two
    nodes (multi-host tensor parallel) argus leaves it to Ray. A real GPU changes none of this
    path: the placement group's nodes decide."""
    result = run_in_serving_venv("""
        import asyncio, json
        import ray
        from ray.serve.llm import LLMConfig
        from ray.llm._internal.serve.engines.vllm import vllm_engine
        from daemon.replicas import ray_private as rp

        ray.init(log_to_driver=False)   # joins the running head (CI's), or starts a local one
        initialized = []

        async def initialize_node(llm_config):
            initialized.append(llm_config.model_id)

        class EngineConfigReached(Exception):
            pass

        def prepare_engine_config(self, ctx):
            raise EngineConfigReached()

        vllm_engine.initialize_node = initialize_node
        vllm_engine.VLLMEngine._prepare_engine_config = prepare_engine_config
        here = ray.get_runtime_context().get_node_id()
        real_nodes = rp.placement_nodes

        def start(model_id, argus, nodes=None):
            config = LLMConfig(model_loading_config={"model_id": model_id, "model_source": "/m"},
                               accelerator_config={"kind": "cpu"})
            if argus:
                rp.skip_node_init_on_one_node(config)
            pg = config.get_or_create_callback().ctx.placement_group   # as a replica's, placed first
            ray.get(pg.ready(), timeout=120)
            rp.placement_nodes = real_nodes if nodes is None else (lambda _: nodes)
            try:
                asyncio.run(vllm_engine.VLLMEngine(config).start())
            except EngineConfigReached:
                pass
            placed = real_nodes(pg)
            ray.util.remove_placement_group(pg)
            return placed

        import os, tempfile
        os.environ["TORCH_HOME"] = tempfile.mkdtemp()
        try:
            out = {"one_node": start("argus", True) == {here},
                   "kernels": os.path.isdir(os.path.join(os.environ["TORCH_HOME"], "kernels"))}   # what Ray's task did
            start("ray", False)
            start("two-nodes", True, {here, "another-node"})
            out["initialized"] = initialized
        finally:
            ray.shutdown()
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["one_node"] is True and out["kernels"] is True, out
    assert out["initialized"] == ["ray", "two-nodes"], out
