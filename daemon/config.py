"""The platform config (configs/dev.yaml, configs/local.yaml), validated on load.

A config file is YAML; string values may use `${VAR}` / `${VAR:-default}` and a leading
`~`, expanded at load time, so one profile serves any directory a user picks
(`ARGUS_HOME=/data/argus argusd ...`). Which file: `--config`, else `$ARGUS_CONFIG`, else
the repo's `configs/local.yaml`.
"""
from __future__ import annotations

import os
import re
import socket
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from daemon.core.forge import RepoKind, RepoLocation, cleartext_token_problem, parse_repo, ssh_public_key_problem
from daemon.core.quota import GpuQuota
from daemon.core.spec import USER_ID_RE, validate_user_id
from daemon.errors import ConfigError, Problem
from daemon.core.validation import problems_from
from daemon.core.yamldoc import YamlDocError, load_mapping

CPU = "cpu"


class _Strict(BaseModel):
    # defer_build: validators are built when a config is first validated (Config's one build
    # covers every section), not at import: a command that never loads a config never pays.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


# The accelerator names Ray 2.60's LLMConfig accepts with argus's GPU placement bundles: the
# values of ray.util.accelerators.accelerators less the TPU ones (Ray refuses those with GPU
# bundles: "Hardware mismatch"). Any other name makes every model fail at build. Kept in step
# with the installed Ray by tests/integration/test_accelerator_contract.py.
RAY_ACCELERATOR_TYPES = (
    "V100", "P100", "T4", "P4", "K80", "A10G", "L4", "L40S", "A100", "H100", "H200", "H20", "B200",
    "B300", "GB200", "GB300", "RTX-PRO-6000", "Intel-GPU-Max-1550", "Intel-GPU-Max-1100", "Intel-GAUDI",
    "AMD-Instinct-MI100", "AMD-Instinct-MI250X", "AMD-Instinct-MI250X-MI250", "AMD-Instinct-MI210",
    "AMD-Instinct-MI300A", "AMD-Instinct-MI300X-OAM", "AMD-Instinct-MI300X-HF", "AMD-Instinct-MI308X",
    "AMD-Instinct-MI325X-OAM", "AMD-Instinct-MI350X-OAM", "AMD-Instinct-MI355X-OAM",
    "AMD-Radeon-R9-200-HD-7900", "AMD-Radeon-HD-7900", "aws-neuron-core", "Ascend910B", "Ascend910B4",
    "MXC500", "MXC550", "FURIOSA_RNGD", "M1", "M1-Pro", "M1-Max", "M1-Ultra", "M2", "M2-Pro", "M2-Max",
    "M2-Ultra", "M3", "M3-Pro", "M3-Max", "Apple-Silicon", "A100-40G", "A100-80G", "MOBILINT_ARIES",
    "MOBILINT_REGULUS",
)
# Names LLMConfig rewrites: argus must use Ray's own name, since it is also the node resource
# (accelerator_type:<name>) the placement bundles ask for.
RAY_ACCELERATOR_ALIASES = {"A10": "A10G"}


def accelerator_problem(value: str) -> str | None:
    """Why `value` is no accelerator argus can serve on, or None (pure; the config's rule)."""
    if value.lower() == CPU or value in RAY_ACCELERATOR_TYPES:
        return None
    if value in RAY_ACCELERATOR_ALIASES:
        return f"Ray calls {value!r} {RAY_ACCELERATOR_ALIASES[value]!r}; write {RAY_ACCELERATOR_ALIASES[value]}"
    close = [name for name in RAY_ACCELERATOR_TYPES if name.lower() == value.lower()]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (f"{value!r} is not an accelerator type Ray 2.60 accepts{hint}: every model would fail to "
            f"build. Use 'cpu' or one of: {', '.join(RAY_ACCELERATOR_TYPES)}")


class LlmConfig(_Strict):
    # A Ray accelerator name (H20, H100, A100, L4, ...; RAY_ACCELERATOR_TYPES) for GPU clusters,
    # or "cpu" to serve with a CPU build of vLLM through LLMConfig.accelerator_config={"kind": "cpu"}.
    accelerator_type: str = "H20"
    # engine_kwargs every model starts from; a spec's own engine_kwargs win.
    engine_defaults: dict[str, object] = Field(default_factory=dict)
    # Extra environment for every replica (HF cache, HF_HUB_OFFLINE are always set).
    env_vars: dict[str, str] = Field(default_factory=dict)
    # Writable by the replicas: HF_HOME and VLLM_CACHE_ROOT live here.
    cache_dir: str = "/tmp/argus-cache"
    # GPU admission. fit: a model goes into Serve only when every replica fits on one node
    # with the GPUs free now; the rest waits QUEUED with what it needs. autoscale: every model
    # goes in and Ray's autoscaler turns the pending placement groups into new nodes.
    admission: Literal["fit", "autoscale"] = "fit"

    @field_validator("accelerator_type")
    @classmethod
    def _accelerator(cls, value: str) -> str:
        problem = accelerator_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @property
    def on_cpu(self) -> bool:
        return self.accelerator_type.lower() == CPU


class ServeConfig(_Strict):
    http_host: str = "0.0.0.0"
    http_port: int = Field(8000, ge=1, le=65535)
    proxy_location: Literal["HeadOnly", "EveryNode", "Disabled"] = "HeadOnly"
    dashboard_url: str = "http://127.0.0.1:8265"
    # Removed: argus always runs one Serve app per model behind its front end. Only a field so
    # that a config still naming it gets one error that says so, at its line (never set).
    layout: Optional[str] = Field(None, exclude=True, repr=False)
    # Replicas of the front end (the one OpenAI endpoint); two or more so that losing one
    # replica does not make every model unreachable.
    frontend_replicas: int = Field(2, ge=1, le=64)
    # One active argusd per cluster: the lease (kept in Serve) expires this many seconds after
    # its holder stops renewing; a standby argusd then takes over. 0: no lease.
    lease_seconds: float = Field(30.0, ge=0)
    # How long the front end holds a request for an autoscaled model at zero replicas while it
    # wakes (then 503 with Retry-After). A cold start on CPU takes 1-2 min; large models on
    # GPUs load for minutes. At most 540: Ray Serve LLM's ingress gives up on a request after
    # 600 s (RAY_SERVE_LLM_ROUTER_HTTP_TIMEOUT, the wait and a plain answer together), so a
    # longer hold would end in Ray's 408 instead of argus's 503 with Retry-After.
    wake_timeout_s: float = Field(300.0, gt=0, le=540, strict=False)
    # How long a replica Serve stops (scaled down, num_replicas or max_replicas lowered, a
    # rollout's old generation removed, a model suspended or deleted; a front-end replica too)
    # lets its in-flight requests finish before Serve kills it: its graceful_shutdown_timeout_s
    # (Ray's default, 20 s, cuts long generations). 600: Ray Serve LLM's ingress ends every
    # request that is not a stream by then (RAY_SERVE_LLM_ROUTER_HTTP_TIMEOUT), so none is cut;
    # a stream may run longer and is cut at this bound. A stopping replica holds its GPUs
    # only while a request still runs on it (it exits within DRAIN_POLL_S of its last one).
    # Changed in place: no replica restarts. At most an hour.
    drain_timeout_s: float = Field(600.0, ge=2, le=3600, strict=False)


    @field_validator("layout", mode="before")
    @classmethod
    def _layout_removed(cls, value: Any) -> None:
        raise ValueError(LAYOUT_REMOVED)


LAYOUT_REMOVED = ("this key was removed: argus always runs one Serve application per model behind its front "
                  "end (what `per_model` was; `single_app` is gone); delete the line")


class RayConfig(_Strict):
    address: str = "auto"


class ServingConfig(_Strict):
    llm: LlmConfig = Field(default_factory=LlmConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    ray: RayConfig = Field(default_factory=RayConfig)


class StorageConfig(_Strict):
    # <root>/hf holds shared models, <root>/users/<user_id> each user's own files.
    root: str = "/private"

    @field_validator("root")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not os.path.isabs(value):
            raise ValueError(f"must be an absolute path, got {value!r}")
        return os.path.normpath(value)


class LimitsConfig(_Strict):
    max_replicas: int = Field(8, ge=1, le=1024)
    max_gpus_per_replica: int = Field(8, ge=1, le=64)
    max_spec_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024)
    # GPUs each user's models may reserve at once, for users without users.<user>.max_gpus of
    # their own (core/quota.py). None: no quota.
    max_gpus_per_user: Optional[int] = Field(None, ge=0)


class EngineKwargsPolicy(_Strict):
    allow_trust_remote_code: bool = False
    # Further vLLM engine arguments this platform lets users set (beyond the built-in list).
    extra_allowed: list[str] = Field(default_factory=list)


def _absolute_path(value: str, what: str) -> str:
    """A config path must name one place on disk: "" would mean the current directory (argusd
    would sync whatever repo it was started in) and ":memory:" a store that is never saved."""
    if not value.strip():
        raise ValueError(f"is empty; give the absolute path of the {what}")
    if not os.path.isabs(value):
        raise ValueError(f"must be an absolute path of the {what}, got {value!r}")
    return os.path.normpath(value)


# git's own rules for a branch name (git check-ref-format --branch), the parts that matter here.
_BRANCH = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)(?!.*\.lock$)(?!.*/$)[A-Za-z0-9._/-]{1,200}")


class StateConfig(_Strict):
    db: str = "/var/lib/argus/argus.db"

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return _absolute_path(value, "SQLite file argusd keeps its state in")


class Reader(Enum):
    """Who loads the config. Only argusd may read its secrets (credentials, webhook secrets,
    its signing key); the pre-receive hook (run as the pushing user) and argusctl (run as a
    user) must work without them, so a secret file is checked only when argusd loads."""
    ARGUSD = "argusd"
    USER = "user"


def _reads_secrets(info: ValidationInfo) -> bool:
    return bool(info.context) and info.context.get("reader") is Reader.ARGUSD


def _secret_file(value: str, what: str, info: ValidationInfo, *, not_empty: bool = False) -> str:
    """A credential or secret named by path: when argusd loads, checked (exists, readable, and
    when `not_empty` holds a line), so a typo is one error at its line instead of a fetch or
    delivery that fails later; for anyone else only its path is checked (they must not read it)."""
    path = _absolute_path(value, what)
    if not _reads_secrets(info):
        return path
    if not os.path.isfile(path):
        raise ValueError(f"{path} does not exist or is not a file; create the {what} there or fix the path")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{path} is not readable by this user; fix its owner or mode (chmod 600, owned by argusd's user)")
    if not_empty:
        try:
            with open(path, "rb") as handle:
                empty = not handle.read(4096).strip()
        except OSError as exc:
            raise ValueError(f"cannot read {path} ({exc.strerror}); fix its owner or mode") from None
        if empty:
            raise ValueError(f"{path} is empty; put the secret in it (one line, as given to the forge)")
    return path


class GitCredentials(_Strict):
    """How argusd (and `argusctl init`'s clone) authenticates to a remote gitops.repo: files
    only, never the secret itself. SSH: a private key and the known_hosts that pins the host
    key (no trust on first use). HTTPS: a file with a token, given to git by a credential
    helper that reads it (never in a URL)."""
    ssh_key: Optional[str] = None
    known_hosts: Optional[str] = None
    token_file: Optional[str] = None
    # The HTTPS user the token goes with (GitHub: x-access-token; GitLab: oauth2 or the token's name).
    username: str = "git"

    @field_validator("ssh_key")
    @classmethod
    def _ssh_key(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        return None if value is None else _secret_file(value, "SSH private key", info)

    @field_validator("known_hosts")
    @classmethod
    def _known_hosts(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        return None if value is None else _secret_file(value, "known_hosts file (ssh-keyscan -p PORT HOST > FILE, checked)", info)

    @field_validator("token_file")
    @classmethod
    def _token_file(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        return None if value is None else _secret_file(value, "file holding the HTTPS access token", info, not_empty=True)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._@+-]{1,100}", value):
            raise ValueError(f"{value!r} is not a user name a forge gives; e.g. git, oauth2 or x-access-token")
        return value


class WebhookSecret(_Strict):
    # A file holding the webhook's shared secret (one line), as set in the forge's webhook form.
    secret_file: str

    @field_validator("secret_file")
    @classmethod
    def _secret(cls, value: str, info: ValidationInfo) -> str:
        return _secret_file(value, "file holding the webhook secret", info, not_empty=True)


class WebhooksConfig(_Strict):
    """Receivers on the API listener, POST /api/v2/webhooks/<forge>; one absent: its receiver is off."""
    github: Optional[WebhookSecret] = None
    gitlab: Optional[WebhookSecret] = None
    gitea: Optional[WebhookSecret] = None    # Gitea and Forgejo
    generic: Optional[WebhookSecret] = None  # any sender signing the body with HMAC-SHA256


class GitopsConfig(_Strict):
    # A bare repo on this machine (absolute path), or a remote one argusd mirrors:
    # ssh://git@host[:port]/group/repo.git, git@host:group/repo.git, https://host/group/repo.git.
    repo: str = "/srv/argus/gitops.git"
    branch: str = "main"
    # The user's working clone for argusctl init/apply/scale/delete (ARGUS_WORKDIR wins).
    workdir: str = "~/argus-gitops"
    poll_seconds: float = Field(5.0, gt=0, le=3600, strict=False)
    # A remote repo: argusd's local mirror (default: gitops-mirror.git beside state.db).
    mirror: Optional[str] = None
    # A fetch that takes longer is stopped and counted as failed (a hung server never wedges sync).
    fetch_timeout_seconds: float = Field(60.0, gt=0, le=3600, strict=False)
    credentials: GitCredentials = Field(default_factory=GitCredentials)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    # A change under models.d/<user>/ applies only if a commit signed by one of the user's
    # users.<user>.signing_keys made it (git verifies: gpg.ssh.allowedSignersFile).
    require_signed: bool = False
    # argusd's own SSH private key: it signs the API's writes (the .pub beside it is trusted as
    # argusd's; see docs/operating.md, "Signed commits").
    api_signing_key: Optional[str] = None

    @field_validator("api_signing_key")
    @classmethod
    def _api_signing_key(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        if value is None:
            return None
        path = _secret_file(value, "SSH private key argusd signs API writes with", info)
        if not os.path.isfile(path + ".pub"):  # the public half: what the hook and everyone else check with
            raise ValueError(f"{path}.pub does not exist; put the key's public half beside it "
                             f"(ssh-keygen -y -f {path} > {path}.pub)")
        return path

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        return parse_repo(value).value

    @field_validator("mirror")
    @classmethod
    def _mirror(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else _absolute_path(value, "mirror argusd keeps of the remote repo")

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        if not _BRANCH.fullmatch(value):
            raise ValueError(f"{value!r} is not a branch name; use e.g. main")
        return value

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty; give the path of your working clone, e.g. ~/argus-gitops")
        return value

    @model_validator(mode="after")
    def _credentials_fit(self) -> "GitopsConfig":
        kind = self.location.kind
        creds = self.credentials
        if kind is RepoKind.SSH and (creds.ssh_key is None) != (creds.known_hosts is None):
            given, missing = ("known_hosts", "ssh_key") if creds.ssh_key is None else ("ssh_key", "known_hosts")
            raise ValueError(f"gitops.credentials.{given} is set but not gitops.credentials.{missing}: an SSH repo "
                             "needs both (the key argusd logs in with, and the known_hosts that pins the server's "
                             "host key; ssh-keyscan -p PORT HOST > FILE, then check it)")
        if kind is not RepoKind.SSH and (creds.ssh_key or creds.known_hosts):
            raise ValueError(f"gitops.credentials.ssh_key and known_hosts are for an ssh:// repo, and gitops.repo is "
                             f"{kind.value}; remove them (an HTTPS repo takes token_file)")
        if kind is not RepoKind.HTTPS and creds.token_file:
            raise ValueError(f"gitops.credentials.token_file is for an https:// repo, and gitops.repo is {kind.value}; "
                             "remove it (an SSH repo takes ssh_key and known_hosts)")
        cleartext = cleartext_token_problem(self.repo) if creds.token_file else None
        if cleartext:
            raise ValueError(cleartext)
        return self

    @property
    def location(self) -> RepoLocation:
        return parse_repo(self.repo)


def gitops_mirror(config: "Config") -> str:
    """The repo argusd reads commits from: gitops.repo itself when local, else its mirror."""
    gitops = config.gitops
    if not gitops.location.remote:
        return gitops.repo
    return gitops.mirror or os.path.join(os.path.dirname(config.state.db), "gitops-mirror.git")


def _user_id(value: str) -> str:
    """A key of `users:` is a user id as docs/spec.md defines it (the directory under models.d/):
    `Alice` would never match models.d/alice/, and git treats the two as different paths."""
    try:
        return validate_user_id(value)
    except ValueError as exc:
        lower = value.lower()
        fix = f"; write {lower!r} here and name the directory models.d/{lower}/" if USER_ID_RE.fullmatch(lower) else ""
        raise ValueError(f"{exc}{fix}") from None


UserId = Annotated[str, AfterValidator(_user_id)]


def _ssh_public_key(value: str) -> str:
    problem = ssh_public_key_problem(value)
    if problem:
        raise ValueError(problem)
    return value.strip() + ("\n" if value.lstrip().startswith("-----BEGIN PGP") else "")


SshPublicKey = Annotated[str, AfterValidator(_ssh_public_key)]


class UserConfig(_Strict):
    # Git author emails allowed to change models.d/<user>/ (enforced by hook and daemon).
    git_identities: list[str] = Field(default_factory=list)
    # Public keys whose signatures prove a commit is this user's (gitops.require_signed): SSH
    # ("ssh-ed25519 AAAA... comment") or armored OpenPGP (gpg --armor --export <key id>).
    signing_keys: list[SshPublicKey] = Field(default_factory=list)
    # GPUs this user's models may reserve at once (num_replicas, or autoscaling.min_replicas,
    # times gpus_per_replica; suspended models count none). None: limits.max_gpus_per_user.
    # An entry with only max_gpus is a quota, not an ownership entry (Config.owners).
    max_gpus: Optional[int] = Field(None, ge=0)

    @property
    def owns(self) -> bool:
        """Whether this entry says who may change the user's models: every entry but one that
        sets a quota and nothing else (`alice: {max_gpus: 4}`). An entry with no identities
        (`alice: {}`, `git_identities: []`) still says "nobody", as before quotas existed."""
        return not (self.model_fields_set and self.model_fields_set <= {"max_gpus"})


class _Listener(_Strict):
    # HOST:PORT to serve on (an environment variable overrides it); None: off.
    listen: Optional[str] = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.fullmatch(r"[^\s:]*:\d{1,5}", value):
            raise ValueError(f"must be HOST:PORT such as 127.0.0.1:9464, got {value!r}")
        return value


class MetricsConfig(_Listener):
    """argusd's Prometheus /metrics (ARGUS_METRICS_LISTEN overrides)."""


class ApiConfig(_Listener):
    """argusd's management API and web UI (ARGUS_API_LISTEN overrides)."""

    # How often argusd reads Ray Serve's metrics for the model page's traffic chart. Ray's
    # agents export them every 10 s (RAY_metrics_report_interval_ms): reading much more often
    # gives points of 0 between bursts, so keep it at three exports or more.
    traffic_seconds: float = Field(30.0, gt=0, le=3600, strict=False)


class Config(_Strict):
    profile: str = "dev"
    api: ApiConfig = Field(default_factory=ApiConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    engine_kwargs: EngineKwargsPolicy = Field(default_factory=EngineKwargsPolicy)
    state: StateConfig = Field(default_factory=StateConfig)
    gitops: GitopsConfig = Field(default_factory=GitopsConfig)
    # Who may change models.d/<user>/, and each user's GPU quota. With no user that has
    # git_identities or signing_keys (empty, or quotas only) there is no ownership map: every
    # well-formed user directory is accepted, from anyone (Config.owners).
    users: dict[UserId, UserConfig] = Field(default_factory=dict)

    def signing_keys(self) -> dict[str, list[str]]:
        """user -> the SSH public keys whose signatures prove that user's commits."""
        return {user: list(u.signing_keys) for user, u in self.users.items()}

    def owners(self) -> dict[str, tuple[str, ...]]:
        """user -> the git author emails allowed to change models.d/<user>/ (core.ownership);
        empty (no ownership checks, every user known) when every entry sets a quota and nothing
        else: a users: section that only sets quotas (`alice: {max_gpus: 4}`) must not
        decide who may push. Once it does, every user it lists is in the map (one listed
        without git_identities: nobody may change their models) and no other user is known."""
        if not any(u.owns for u in self.users.values()):
            return {}
        return {user: tuple(u.git_identities) for user, u in self.users.items()}

    def gpu_quota(self, user: str) -> GpuQuota | None:
        """GPUs `user`'s models may reserve at once (core/quota.py): users.<user>.max_gpus, else
        limits.max_gpus_per_user; None: no quota."""
        own = self.users.get(user)
        if own is not None and own.max_gpus is not None:
            return GpuQuota(own.max_gpus, f"users.{user}.max_gpus")
        default = self.limits.max_gpus_per_user
        return None if default is None else GpuQuota(default, "limits.max_gpus_per_user")


def openai_base_url(config: Config) -> str:
    """The one OpenAI endpoint as users reach it (a wildcard bind is shown as this host's name)."""
    serve = config.serving.serve
    host = serve.http_host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://{host}:{serve.http_port}/v1"


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(value: str, env: dict[str, str]) -> str:
    """`${VAR}`, `${VAR:-default}` and a leading `~` (unset VAR without default -> error)."""

    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise KeyError(name)

    out = _VAR.sub(sub, value)
    if out.startswith("~"):
        out = os.path.expanduser(out)
    return out


def _expand_tree(value: object, env: dict[str, str], loc: tuple, errors: list) -> object:
    if isinstance(value, dict):
        return {k: _expand_tree(v, env, loc + (k,), errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_tree(v, env, loc + (i,), errors) for i, v in enumerate(value)]
    if isinstance(value, str):
        try:
            return expand(value, env)
        except KeyError as missing:
            errors.append((loc, f"environment variable {missing.args[0]} is not set; set it or write ${{{missing.args[0]}:-default}}"))
    return value


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def default_config_path(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("ARGUS_CONFIG"):
        return Path(env["ARGUS_CONFIG"])
    return repo_root() / "configs" / "local.yaml"


def signing_problems(config: Config) -> list[tuple[tuple, str]]:
    """(place in the config, message) for a require_signed that would check nothing: without
    a users section no directory has an owner whose keys could be required, and a user without
    a signing key could never change their models."""
    if not config.gitops.require_signed:
        return []
    if not config.users:
        return [(("gitops", "require_signed"),
                 "gitops.require_signed: is true but there is no users section, so no signature would be "
                 "checked; add users.<user>.git_identities and signing_keys for each user, or set it to false")]
    return [(("users", user), f"users.{user}: has no signing_keys, and gitops.require_signed is true; add the "
                              "user's public key (a line of their .pub file, or gpg --armor --export <key id>)")
            for user, u in config.users.items() if not u.signing_keys]


def load_config(path: str | os.PathLike | None = None, env: dict[str, str] | None = None,
                reader: Reader = Reader.USER) -> Config:
    """Read and validate a config file. Raises ConfigError with `path:line:col` lines. Secret
    files are checked only for `Reader.ARGUSD` (see Reader)."""
    env = dict(os.environ if env is None else env)
    cfg_path = Path(path) if path is not None else default_config_path(env)
    try:
        data = cfg_path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {cfg_path} not found; pass --config or set ARGUS_CONFIG") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {cfg_path}: {exc.strerror}") from None
    try:
        doc = load_mapping(data, max_bytes=1024 * 1024, what="config")
    except YamlDocError as exc:
        raise ConfigError(f"{cfg_path}:{exc.line}:{exc.col}: {exc.message}") from None
    errors: list = []
    value = _expand_tree(doc.value, env, (), errors)
    problems = [Problem(str(cfg_path), *_lc(doc, loc), msg) for loc, msg in errors]
    if not problems:
        try:
            config = Config.model_validate(value, context={"reader": reader})
        except ValidationError as exc:
            problems = problems_from(exc, doc, str(cfg_path), Config)
        else:
            problems = [Problem(str(cfg_path), *_lc(doc, loc), msg) for loc, msg in signing_problems(config)]
            if not problems:
                return config
    raise ConfigError("invalid config:\n" + "\n".join(str(p) for p in sorted(problems)))


def _lc(doc, loc) -> tuple[int, int]:
    pos = doc.position(loc)
    return pos.line, pos.col
