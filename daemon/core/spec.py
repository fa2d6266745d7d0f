"""ServingSpec: what a user writes, the rules it must follow, and how it resolves.

Pure functions of their inputs: the path rules here are lexical; what a folder really is
(symlinks, config.json) is read by a shell into core.folders.FolderFacts and judged there.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daemon.core.engine_policy import LORA_RANKS, check_engine_kwargs
from daemon.core.folders import FolderFacts, escape_problem, model_folder_problem
from daemon.core.replica_contract import is_below
from daemon.core.states import StrEnum
from daemon.errors import Problem, ProblemKind, SpecError
from daemon.core.validation import is_int, problems_from
from daemon.core.yamldoc import YamlDoc, YamlDocError, load_mapping

SUFFIX_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}")
# Like a Linux user name: lowercase, starts with a letter, at most 32 characters.
USER_ID_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MAX_SOURCE_LEN = 4096
# C0, DEL and C1 (U+0080-U+009F): no path argus serves from has any of them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


MAX_ADAPTERS_LOADED = 64
ANY_USER = "*"


class AdapterPolicy(BaseModel):
    """A base model's opt-in to LoRA adapters: what its replicas reserve for them and who may
    attach them (its owner always may)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    max_rank: int = Field(description=f"Largest LoRA rank an adapter may have; one of {', '.join(map(str, LORA_RANKS))}.")
    max_loaded: int = Field(4, ge=1, le=MAX_ADAPTERS_LOADED,
                            description="Adapters each replica holds at once (vLLM max_loras); more are swapped in.")
    users: list[str] = Field(default_factory=list,
                             description="Other users who may attach adapters to this model; \"*\" for everyone.")


class RolloutStrategy(StrEnum):
    SURGE = "surge"          # the new generation starts beside the serving one; clients move once it answered
    RECREATE = "recreate"    # the serving generation is replaced in place: the model is down while it starts


SURGE = RolloutStrategy.SURGE

# A canary's bounds (docs/spec.md, "Rollouts"). Its failure rates come from Ray's metrics, which a
# replica exports every few seconds and argusd reads every api.traffic_seconds (30 s by default):
# under a minute holds too few readings to compare two generations. Over a day, the model holds
# two generations' replicas (and GPUs) for longer than a day's traffic pattern needs.
MIN_CANARY_SECONDS = 60
MAX_CANARY_SECONDS = 24 * 3600


class RolloutPolicy(BaseModel):
    """How a change that needs new replicas reaches a running model (docs/serving.md, Rollouts)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    strategy: RolloutStrategy = Field(RolloutStrategy.SURGE, strict=False,
                                      description="surge: start the new generation beside the serving one and "
                                      "switch once it answered (needs room for both); recreate: replace it in place "
                                      "(the model is unavailable while the new one starts).")
    canary_percent: int | None = Field(None, ge=1, le=99,
                                       description="With surge: the share (%) of the model's requests the new "
                                       "generation takes for canary_seconds before the full switch; it is rolled "
                                       "back if its failure rate is above the serving one's.")
    canary_seconds: int | None = Field(None, ge=MIN_CANARY_SECONDS, le=MAX_CANARY_SECONDS,
                                       description="How long the canary share lasts (with canary_percent).")


# Ray Serve LLM's own default never scales by load (target 1e9); argus's default lets a replica
# take a vLLM batch's worth of requests before Serve adds one.
DEFAULT_TARGET_ONGOING_REQUESTS = 16
DEFAULT_SCALE_DOWN_DELAY_S = 300


class AutoscalingPolicy(BaseModel):
    """Replicas that follow the load between min_replicas and max_replicas (Ray Serve's own
    autoscaling, docs/serving.md "Autoscaling"); min_replicas 0 lets an idle model hold no
    replica and no GPU, and wake on its next request."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    min_replicas: int = Field(ge=0, description="Replicas kept however idle the model is (reserved like "
                              "num_replicas); 0: none when idle, the next request wakes it.")
    max_replicas: int = Field(ge=1, description="Most replicas Serve adds under load (only where GPUs are free).")
    target_ongoing_requests: int = Field(DEFAULT_TARGET_ONGOING_REQUESTS, ge=1,
                                         description="Requests one replica takes at once before Serve adds another.")
    scale_down_delay_s: int = Field(DEFAULT_SCALE_DOWN_DELAY_S, ge=0,
                                    description="Seconds of lower load before Serve removes a replica "
                                    "(also the idle time before the last one goes, with min_replicas 0).")


class ServingSpec(BaseModel):
    """One model a user wants served, or (with base_model) a LoRA adapter on a model that
    runs. Strict: `"2"`, `true` or `1.5` are not integers."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    model_id: str = Field(description="Model id suffix; the public id is <user_id>-<YYYYMMDDHHMM>-<model_id>.",
                          pattern=f"^{SUFFIX_RE.pattern}$")
    model_source: str = Field(description="Local model folder. Macros: $HOME/common/hf, $HOME/common/datasets, $HOME.")
    num_replicas: int = Field(1, ge=1, description="Serve replicas of the model.")
    gpus_per_replica: int = Field(1, ge=1, description="GPUs per replica; becomes tensor_parallel_size.")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="vLLM engine arguments (policy-checked).")
    adapters: AdapterPolicy | None = Field(None, description="Take LoRA adapters (specs with base_model) on this model.")
    rollout: RolloutPolicy | None = Field(None, description="How a change that needs new replicas rolls out.")
    autoscaling: AutoscalingPolicy | None = Field(None, description="Replicas that follow the load (instead of "
                                                  "num_replicas); min_replicas 0 frees an idle model's GPUs.")
    suspended: bool = Field(False, description="true: the model keeps its id, history and adapters but runs no "
                            "replica and holds no GPU; its requests get 503 until it is set back to false.")
    base_model: str | None = Field(None, description="Makes this spec a LoRA adapter on that model: its public id, "
                                   "or the model_id of one of your own models. model_source is then the adapter folder.",
                                   pattern=f"^{SUFFIX_RE.pattern}$", max_length=110)


# Fields an adapter spec does not take: it runs on its base model's replicas.
ADAPTER_ONLY_FIELDS = ("model_id", "base_model", "model_source")
# What to do instead, for the fields about replicas that a user carries over from a model's spec.
_ADAPTER_FIELD_HINTS = {
    "autoscaling": "it scales with its base model (autoscaling goes in the base model's spec)",
    "suspended": "suspend its base model instead, or delete this file to remove the adapter",
}

# Bounds of autoscaling argus adds to Ray Serve's own (docs/spec.md, "Replicas"). A replica runs
# at most vLLM's max_num_seqs requests at once and queues the rest; its default is 256, 1024 on
# GPUs of 70 GiB or more (vllm/engine/arg_utils.py). A target above that would never add a replica.
MAX_TARGET_ONGOING_REQUESTS = 1024
# A day: a longer delay keeps replicas (and their GPUs) for load that is long gone.
MAX_SCALE_DOWN_DELAY_S = 24 * 3600


@dataclass(frozen=True)
class SpecPolicy:
    """The parts of the platform config that decide whether a spec is valid (no defaults of
    its own: `from_config` is the one way to make it outside tests)."""

    root: str
    max_replicas: int
    max_gpus_per_replica: int
    max_spec_bytes: int
    allow_trust_remote_code: bool
    extra_allowed: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Any) -> "SpecPolicy":
        return cls(root=config.storage.root,
                   max_replicas=config.limits.max_replicas,
                   max_gpus_per_replica=config.limits.max_gpus_per_replica,
                   max_spec_bytes=config.limits.max_spec_bytes,
                   allow_trust_remote_code=config.engine_kwargs.allow_trust_remote_code,
                   extra_allowed=tuple(config.engine_kwargs.extra_allowed))


@dataclass(frozen=True)
class ResolvedServingSpec:
    user_id: str
    model_id_suffix: str
    model_id_prefix: str
    model_id: str
    model_source: str
    num_replicas: int
    gpus_per_replica: int
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    adapters: dict[str, Any] | None = None   # AdapterPolicy as a dict: the model takes adapters
    base_model: str | None = None            # this is an adapter on that model (public id or own suffix)
    rollout: dict[str, Any] | None = None    # RolloutPolicy as a dict (None: the default, surge)
    # AutoscalingPolicy as a dict (None: a fixed num_replicas). With it, num_replicas is the
    # replicas reserved (min_replicas), what admission and quotas count.
    autoscaling: dict[str, Any] | None = None
    suspended: bool = False                  # declared, running nothing (docs/serving.md "Suspend")

    @property
    def is_adapter(self) -> bool:
        return self.base_model is not None

    @property
    def max_replicas(self) -> int:
        """The most replicas the model may run: num_replicas, or autoscaling.max_replicas."""
        return int(self.autoscaling["max_replicas"]) if self.autoscaling is not None else self.num_replicas

    @property
    def may_idle(self) -> bool:
        """Serve may run no replica of the model by its own decision (autoscaled, min_replicas 0)."""
        return self.autoscaling is not None and int(self.autoscaling["min_replicas"]) == 0

    @property
    def reserved_gpus(self) -> int:
        """GPUs the model holds however idle it is (what a user's quota counts): none while
        suspended; with autoscaling, min_replicas' worth."""
        return 0 if self.suspended else self.num_replicas * self.gpus_per_replica

    @property
    def rollout_strategy(self) -> RolloutStrategy:
        return RolloutStrategy((self.rollout or {}).get("strategy", RolloutStrategy.SURGE))

    @property
    def canary(self) -> tuple[int, int] | None:
        """(percent, seconds) of its canary phase, or None: the switch follows the probe at once."""
        rollout = self.rollout or {}
        if rollout.get("canary_percent") is None or self.rollout_strategy != RolloutStrategy.SURGE:
            return None
        return int(rollout["canary_percent"]), int(rollout["canary_seconds"])

    def to_dict(self) -> dict[str, Any]:
        out = {"user_id": self.user_id, "model_id_suffix": self.model_id_suffix,
               "model_id_prefix": self.model_id_prefix, "model_id": self.model_id,
               "model_source": self.model_source, "num_replicas": self.num_replicas,
               "gpus_per_replica": self.gpus_per_replica, "engine_kwargs": dict(self.engine_kwargs)}
        # Only when set, so the stored form of every other model stays what it was.
        if self.adapters is not None:
            out["adapters"] = dict(self.adapters)
        if self.base_model is not None:
            out["base_model"] = self.base_model
        if self.rollout is not None:
            out["rollout"] = dict(self.rollout)
        if self.autoscaling is not None:
            out["autoscaling"] = dict(self.autoscaling)
        if self.suspended:
            out["suspended"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ResolvedServingSpec":
        return cls(**data)


def switches_autoscaling(before: dict[str, Any] | None, after: dict[str, Any] | None) -> bool:
    """A change between a fixed replica count and autoscaling (either way). Not a scale Serve
    makes in place: Ray's code version of an app lists its deployments' autoscaling policies
    (2.60 deploy_utils.get_app_code_version), so Serve rebuilds the app and replaces its replicas.
    Sync records it as an update, and the reconcile loop starts a new generation for it."""
    return (before is None) != (after is None)


class PathRejected(ValueError):
    """model_source is not an allowed local path; the message says why. `escapes`: it reaches
    outside the user's own roots (another user's tree, '..', a symlink out), not merely malformed."""

    def __init__(self, message: str, escapes: bool = False):
        super().__init__(message)
        self.escapes = escapes


def validate_model_id_suffix(suffix: object) -> str:
    if not isinstance(suffix, str) or not SUFFIX_RE.fullmatch(suffix):
        raise ValueError(f"model_id {suffix!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return suffix


def validate_user_id(user_id: object) -> str:
    if not isinstance(user_id, str) or not USER_ID_RE.fullmatch(user_id):
        raise ValueError(f"user id {user_id!r} is not valid: use 1-32 lowercase letters, digits, '_' or '-', "
                         "starting with a letter (the directory name under models.d/)")
    return user_id


def make_model_id_prefix(user_id: str, now_utc: datetime) -> str:
    """`<user_id>-<YYYYMMDDHHMM>` with the time in UTC. Naive datetimes are refused."""
    if now_utc.tzinfo is None or now_utc.utcoffset() is None:
        raise ValueError("make_model_id_prefix needs a timezone-aware datetime")
    return f"{validate_user_id(user_id)}-{now_utc.astimezone(timezone.utc):%Y%m%d%H%M}"


def _macros(root: str, user_id: str) -> list[tuple[str, str]]:
    # Longest first, so $HOME/common/hf is not read as $HOME + /common/hf.
    return [("$HOME/common/datasets", posixpath.join(root, "datasets")),
            ("$HOME/common/hf", posixpath.join(root, "hf")),
            ("$HOME", posixpath.join(root, "users", user_id))]


def expand_macros(source: str, user_id: str, root: str) -> str:
    for macro, target in _macros(root, user_id):
        if source == macro or source.startswith(macro + "/"):
            return target + source[len(macro):]
    return source


def resolve_model_source(source: str, user_id: str, root: str) -> str:
    """Expand macros and check the path rules; returns the normalized absolute path."""
    if not isinstance(source, str) or not source.strip():
        raise PathRejected("model_source is empty; give a local model folder such as $HOME/common/hf/<model>")
    if len(source) > MAX_SOURCE_LEN:
        raise PathRejected(f"model_source is longer than {MAX_SOURCE_LEN} characters")
    if _CONTROL.search(source):
        raise PathRejected("model_source contains control characters; write the path without them")
    if ".." in source.split("/"):
        raise PathRejected(f"model_source {source!r} contains a '..' segment; write the path without it", escapes=True)
    if "://" in source:
        raise PathRejected(f"model_source {source!r} is a URL; models load from local paths only")
    expanded = expand_macros(source, user_id, root)
    if "$" in expanded:
        raise PathRejected(f"model_source {source!r} uses an unknown macro; the macros are "
                           "$HOME/common/hf, $HOME/common/datasets and $HOME")
    if not expanded.startswith("/"):
        raise PathRejected(f"model_source {source!r} is not absolute; start it with / or $HOME")
    path = posixpath.normpath(expanded)
    if path.startswith("//"):  # POSIX keeps a leading '//' as is
        path = "/" + path.lstrip("/")
    hf = posixpath.join(root, "hf")
    users = posixpath.join(root, "users")
    mine = posixpath.join(users, user_id)
    allowed = f"{hf}/ or {mine}/"
    if is_below(path, users) and not (path == mine or is_below(path, mine)):
        owner = path[len(users) + 1:].split("/", 1)[0]
        raise PathRejected(f"model_source {path} is in user {owner!r}'s tree; use a path under {allowed}", escapes=True)
    if not (is_below(path, hf) or is_below(path, mine)):
        raise PathRejected(f"model_source {path} is outside the allowed roots; use a path under {allowed}",
                           escapes=True)
    return path


def allowed_roots(user_id: str, root: str) -> str:
    return f"{posixpath.join(root, 'hf')}/ or {posixpath.join(root, 'users', user_id)}/"


def path_problem(facts: FolderFacts, user_id: str, root: str) -> str | None:
    """Why a folder breaks the path rules, or None: as written (resolve_model_source), and
    through its symlinks (a folder swapped for a symlink into another user's tree after the
    spec was accepted, say). Judged when a spec is read, again on every reconcile tick while
    the model or adapter runs, and by its replica where vLLM reads (daemon/replicas/weights.py)."""
    try:
        resolve_model_source(facts.path, user_id, root)
    except PathRejected as exc:
        return str(exc)
    return escape_problem(facts, user_id, allowed_roots(user_id, root))


# said of a folder's path that broke the rules after its spec was accepted (argusd, at deploy)
CHECKED_AGAIN = " (checked again after the spec was accepted)"


def source_problem(facts: FolderFacts, user_id: str, root: str, gpus_per_replica: int = 1) -> str | None:
    """Why a model folder accepted earlier cannot be deployed now, or None. The path rules run
    again at deploy time; a missing folder, or a tensor-parallel size the model cannot be split
    into, fails here in a second, not after minutes on GPUs."""
    swapped = path_problem(facts, user_id, root)
    if swapped is not None:
        return f"{swapped}{CHECKED_AGAIN}"
    return model_folder_problem(facts, gpus_per_replica)


def check_spec(values: dict[str, Any], user_id: str,
               policy: SpecPolicy) -> tuple[list[tuple[tuple, bool, str, ProblemKind]], str | None]:
    """Rules that need the platform config: (problems as (loc, at_key, message, kind), resolved model_source).

    Takes the raw mapping so it can run beside type validation: each rule looks only at a
    field whose type is already right, and a user sees every problem in one pass.
    """
    problems: list[tuple[tuple, bool, str, ProblemKind]] = []
    adapter = values.get("base_model") is not None
    if adapter:
        for key in values:
            if key not in ADAPTER_ONLY_FIELDS:
                hint = _ADAPTER_FIELD_HINTS.get(key, "")
                problems.append(((key,), True, f"{key} is not taken by an adapter spec (base_model is set): an adapter "
                                 f"runs on its base model's replicas; remove it{f': {hint}' if hint else ''}",
                                 ProblemKind.INVALID))
    else:
        problems += _autoscaling_problems(values, policy)
        problems += _rollout_problems(values)
    adapters = values.get("adapters")
    if isinstance(adapters, dict):
        rank = adapters.get("max_rank")
        if is_int(rank) and rank not in LORA_RANKS:
            problems.append((("adapters", "max_rank"), False, f"adapters.max_rank must be one of "
                             f"{', '.join(map(str, LORA_RANKS))} (vLLM's LoRA ranks), got {rank}", ProblemKind.INVALID))
        users = adapters.get("users")
        for i, user in enumerate(users if isinstance(users, list) else []):
            if isinstance(user, str) and user != ANY_USER and not USER_ID_RE.fullmatch(user):
                problems.append((("adapters", "users", i), False, f"adapters.users[{i}] {user!r} is not a user id; "
                                 f"use user ids (the directories under models.d/) or \"{ANY_USER}\"",
                                 ProblemKind.INVALID))
    # beside autoscaling, num_replicas gets one problem: remove it (_autoscaling_problems)
    replicas, gpus = values.get("num_replicas"), values.get("gpus_per_replica")
    if is_int(replicas) and replicas > policy.max_replicas and not isinstance(values.get("autoscaling"), dict):
        problems.append((("num_replicas",), False,
                         f"num_replicas is {replicas}, over this platform's limit of {policy.max_replicas}",
                         ProblemKind.INVALID))
    if is_int(gpus) and gpus > policy.max_gpus_per_replica:
        problems.append((("gpus_per_replica",), False,
                         f"gpus_per_replica is {gpus}, over this platform's limit of {policy.max_gpus_per_replica}",
                         ProblemKind.INVALID))
    source, resolved_source = values.get("model_source"), None
    if isinstance(source, str):
        try:
            resolved_source = resolve_model_source(source, user_id, policy.root)
        except PathRejected as exc:
            problems.append((("model_source",), False, str(exc),
                             ProblemKind.FORBIDDEN if exc.escapes else ProblemKind.INVALID))
    engine_kwargs = values.get("engine_kwargs")
    if isinstance(engine_kwargs, dict):
        for key, at_key, message in check_engine_kwargs(engine_kwargs,
                                                        allow_trust_remote_code=policy.allow_trust_remote_code,
                                                        extra_allowed=policy.extra_allowed):
            problems.append((("engine_kwargs", key), at_key, message, ProblemKind.INVALID))
    return problems, resolved_source


def _autoscaling_problems(values: dict[str, Any], policy: SpecPolicy) -> list[tuple[tuple, bool, str, ProblemKind]]:
    """autoscaling's rules beyond each field's type: no num_replicas beside it, min within max,
    max within the platform's replica limit, and a target and delay that Serve can act on."""
    scaling = values.get("autoscaling")
    if not isinstance(scaling, dict):
        return []
    found = []
    if "num_replicas" in values:
        found.append((("num_replicas",), True, "remove num_replicas: autoscaling sets the replicas (from "
                      "autoscaling.min_replicas up to autoscaling.max_replicas, following the load)",
                      ProblemKind.INVALID))
    low, high = scaling.get("min_replicas"), scaling.get("max_replicas")
    if is_int(high) and high > policy.max_replicas:
        found.append((("autoscaling", "max_replicas"), False, f"autoscaling.max_replicas is {high}, over this "
                      f"platform's limit of {policy.max_replicas}", ProblemKind.INVALID))
    if is_int(low) and is_int(high) and low > high:
        found.append((("autoscaling", "min_replicas"), False, f"autoscaling.min_replicas ({low}) is over "
                      f"autoscaling.max_replicas ({high}); lower min_replicas or raise max_replicas",
                      ProblemKind.INVALID))
    target = scaling.get("target_ongoing_requests")
    if is_int(target) and target > MAX_TARGET_ONGOING_REQUESTS:
        found.append((("autoscaling", "target_ongoing_requests"), False, f"autoscaling.target_ongoing_requests is "
                      f"{target}, over {MAX_TARGET_ONGOING_REQUESTS}: a replica never runs that many requests at "
                      "once (vLLM queues them), so Serve would never add one; use a number near what one "
                      "replica serves well at once (the default is "
                      f"{DEFAULT_TARGET_ONGOING_REQUESTS})", ProblemKind.INVALID))
    delay = scaling.get("scale_down_delay_s")
    if is_int(delay) and delay > MAX_SCALE_DOWN_DELAY_S:
        found.append((("autoscaling", "scale_down_delay_s"), False, f"autoscaling.scale_down_delay_s is {delay}, "
                      f"over a day ({MAX_SCALE_DOWN_DELAY_S}); use at most {MAX_SCALE_DOWN_DELAY_S}, or a fixed "
                      "num_replicas (without autoscaling) for a model that should keep its replicas",
                      ProblemKind.INVALID))
    return found


def _rollout_problems(values: dict[str, Any]) -> list[tuple[tuple, bool, str, ProblemKind]]:
    """A canary needs both of its fields, and the surge strategy (recreate has no serving
    generation beside the new one to share requests with)."""
    rollout = values.get("rollout")
    if not isinstance(rollout, dict):
        return []
    percent, seconds = rollout.get("canary_percent"), rollout.get("canary_seconds")
    found: list[tuple[tuple, bool, str, ProblemKind]] = []
    if percent is not None and seconds is None:
        found.append((("rollout", "canary_percent"), True, "rollout.canary_percent needs rollout.canary_seconds "
                      f"(how long the canary lasts, {MIN_CANARY_SECONDS} to {MAX_CANARY_SECONDS}); add it",
                      ProblemKind.INVALID))
    if seconds is not None and percent is None:
        found.append((("rollout", "canary_seconds"), True, "rollout.canary_seconds needs rollout.canary_percent "
                      "(the share of requests the new generation takes, 1 to 99); add it", ProblemKind.INVALID))
    if (percent is not None or seconds is not None) and rollout.get("strategy") == RolloutStrategy.RECREATE.value:
        key = "canary_percent" if percent is not None else "canary_seconds"
        found.append((("rollout", key), True, f"rollout.{key} needs strategy surge: with recreate no generation "
                      "serves beside the new one to share requests with; remove the canary fields or the "
                      "strategy", ProblemKind.INVALID))
    return found


@dataclass(frozen=True)
class ParsedSpec:
    spec: ServingSpec
    doc: YamlDoc
    model_source: str  # resolved when parsed: resolve_spec need not touch the file system again


@dataclass(frozen=True)
class SpecReading:
    """One spec file read on its own, before its folder is looked at: what it asks for
    (`parsed`), or every problem found. `model_id`: the model it names, whenever that much can
    be read, even in a file that is otherwise invalid (it still claims that model_id)."""

    path: str
    parsed: ParsedSpec | None
    problems: tuple[Problem, ...] = ()
    model_id: str | None = None
    doc: YamlDoc | None = None


def read_spec(path: str, data: bytes, user_id: str, policy: SpecPolicy) -> SpecReading:
    """Load, validate and check one spec file (never raises for bad input)."""
    try:
        validate_user_id(user_id)
    except ValueError as exc:
        return SpecReading(path, None, (Problem(path, 1, 1, str(exc)),))
    try:
        doc = load_mapping(data, max_bytes=policy.max_spec_bytes)
    except YamlDocError as exc:
        return SpecReading(path, None, (Problem(path, exc.line, exc.col, exc.message, ProblemKind.SYNTAX),))
    named = doc.value.get("model_id")
    model_id = named if isinstance(named, str) and SUFFIX_RE.fullmatch(named) else None
    problems: list[Problem] = []
    spec = None
    try:
        spec = ServingSpec.model_validate(doc.value)
    except ValidationError as exc:
        problems = [_suffix_message(p, doc) for p in problems_from(exc, doc, path, ServingSpec)]
    checks, resolved_source = check_spec(doc.value, user_id, policy)
    for loc, at_key, message, kind in checks:
        pos = doc.position(loc, prefer_key=at_key)
        problems.append(Problem(path, pos.line, pos.col, message, kind))
    if problems or spec is None or resolved_source is None:
        return SpecReading(path, None, tuple(sorted(problems)), model_id, doc)
    return SpecReading(path, ParsedSpec(spec, doc, resolved_source), (), model_id, doc)


def parse_spec(path: str, data: bytes, user_id: str, policy: SpecPolicy) -> ParsedSpec:
    """Load, validate and check one spec file on its own (no folder facts: the judge,
    core/verdict.py, adds those). Raises SpecError listing every problem."""
    reading = read_spec(path, data, user_id, policy)
    if reading.parsed is None:
        raise SpecError(list(reading.problems))
    return reading.parsed


def _suffix_message(problem: Problem, doc: YamlDoc) -> Problem:
    # pydantic's pattern message is a regex dump; say it the way validate_model_id_suffix does.
    if problem.message.startswith("model_id: String should match pattern"):
        try:
            validate_model_id_suffix(doc.value.get("model_id"))
        except ValueError as exc:
            return Problem(problem.path, problem.line, problem.col, str(exc))
    return problem


def resolve_spec(spec: ServingSpec, user_id: str, created_at: datetime, policy: SpecPolicy,
                 model_source: str | None = None) -> ResolvedServingSpec:
    """The spec as the platform runs it. `created_at` is when the model was first created;
    `model_source`, when given, is the already-resolved path (ParsedSpec.model_source)."""
    prefix = make_model_id_prefix(user_id, created_at)
    adapter = spec.base_model is not None   # runs on its base's replicas: no replicas or GPUs of its own
    scaling = spec.autoscaling
    replicas = scaling.min_replicas if scaling is not None else spec.num_replicas
    return ResolvedServingSpec(
        user_id=user_id,
        model_id_suffix=spec.model_id,
        model_id_prefix=prefix,
        model_id=f"{prefix}-{spec.model_id}",
        model_source=model_source or resolve_model_source(spec.model_source, user_id, policy.root),
        num_replicas=0 if adapter else replicas,
        gpus_per_replica=0 if adapter else spec.gpus_per_replica,
        engine_kwargs=dict(spec.engine_kwargs),
        adapters=spec.adapters.model_dump() if spec.adapters is not None else None,
        base_model=spec.base_model,
        rollout=spec.rollout.model_dump(mode="json", exclude_none=True) if spec.rollout is not None else None,
        autoscaling=scaling.model_dump() if scaling is not None else None,
        suspended=spec.suspended,
    )


def spec_json_schema(policy: SpecPolicy | None = None) -> dict[str, Any]:
    """JSON Schema of ServingSpec for editors, with this platform's limits filled in."""
    schema = ServingSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "argus ServingSpec"
    scaling = schema["$defs"]["AutoscalingPolicy"]["properties"]
    scaling["target_ongoing_requests"]["maximum"] = MAX_TARGET_ONGOING_REQUESTS
    scaling["scale_down_delay_s"]["maximum"] = MAX_SCALE_DOWN_DELAY_S
    # autoscaling sets the replicas: a spec gives it or num_replicas, never both.
    schema["not"] = {"required": ["num_replicas", "autoscaling"]}
    if policy is not None:
        props = schema["properties"]
        props["num_replicas"]["maximum"] = policy.max_replicas
        props["gpus_per_replica"]["maximum"] = policy.max_gpus_per_replica
        scaling["max_replicas"]["maximum"] = policy.max_replicas
        scaling["min_replicas"]["maximum"] = policy.max_replicas
    return schema
