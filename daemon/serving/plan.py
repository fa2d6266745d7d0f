"""The reconcile decision: a pure function of (desired models, observed Serve, capacity).

plan() says which Serve config to apply (None: Serve already runs what argus wants, apply
nothing) and which state transitions and events to record. The shell (reconciler.py) gathers
the inputs, puts the config and writes the outcome. Its parts, by job: observe.py reads what
Serve reports, admit.py decides who is in the next config, judge.py decides each model's and
adapter's transition and the front end's routes, serve_config.py is the config itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.core.states import ModelState
from daemon.replicas.names import LEASE_APP, is_argus_app, model_app_name
from daemon.serving.admit import admit
from daemon.serving.desired import DesiredModel, Transition
from daemon.serving.judge import judge, judge_adapters, routes
from daemon.serving.llm_config import LlmSettings
from daemon.serving.observe import Observed
from daemon.serving.placement import Capacity
from daemon.serving.serve_config import FrontendApp, HttpOptions, LeaseApp, ModelApp, ServeConfig


@dataclass(frozen=True)
class ServeSettings:
    """What the reconcile decision needs from the config's serving.serve (no defaults of its
    own: the config's are the only ones)."""

    http_host: str
    http_port: int
    proxy_location: str
    frontend_replicas: int          # replicas of the front end

    @property
    def http(self) -> HttpOptions:
        return HttpOptions(self.http_host, self.http_port, self.proxy_location)

    @classmethod
    def from_config(cls, config: Any) -> "ServeSettings":
        serve = config.serving.serve
        return cls(serve.http_host, serve.http_port, serve.proxy_location, serve.frontend_replicas)


@dataclass(frozen=True)
class Plan:
    apply: ServeConfig | None
    transitions: list[Transition]

    @property
    def noop(self) -> bool:
        return self.apply is None and not self.transitions


def config_differs(desired: ServeConfig, observed: Observed, ignore: frozenset[str] | set[str] = frozenset()) -> bool:
    """Whether Serve runs argus's applications other than as desired (other apps are not argus's;
    an app Serve is deleting counts as gone)."""
    wanted = {name: app for name, app in desired.by_name().items() if name not in ignore and is_argus_app(name)}
    have = {name: app for name, app in observed.as_configured().items() if name not in ignore and is_argus_app(name)}
    return wanted != have


def plan(models: list[DesiredModel], observed: Observed, *, capacity: Capacity | None,
         settings: LlmSettings, serve: ServeSettings, lease: dict[str, Any] | None = None,
         probes: dict[str, str | None] | None = None) -> Plan:
    """What to apply and record, in four steps: admit (who is in the next config), judge each
    model against what Serve reports, judge the adapters against their base models, and route
    the front end. `capacity` None: no GPU admission (CPU serving). `lease`: the lease value
    this daemon holds, kept in the config (None: no lease). `probes`: adapters the shell asked
    through the endpoint this tick (model key -> None when it answered, else the failure)."""
    adapters = [m for m in models if m.spec.is_adapter]
    models = [m for m in models if not m.spec.is_adapter]
    running_now = observed.running_models()
    admission = admit(models, running_now, capacity, settings, observed)
    # The model apps as they would be without adapters (their tables follow the adapters' judging).
    bare = {key: ModelApp.of(d, model_app_name(key)) for key, d in admission.entries.items()}

    transitions = list(admission.transitions)
    decided = {t.model_key for t in transitions}
    for model in models:
        if model.model_key in decided:  # admission already said what happens to it this tick
            continue
        wanted = bare.get(model.model_key)
        # Only this model's own app decides whether it is applied (its adapter table aside).
        app = observed.apps.get(model_app_name(model.model_key))
        in_sync = wanted is not None and app is not None and wanted.same_server(app.config)
        judged = judge(model, observed.server(model.model_key), app, in_sync,
                       model.model_key in admission.admitted, running_now.get(model.model_key),
                       admission.entries.get(model.model_key))
        if judged is not None:
            transitions.append(judged)
    state_after: dict[str, ModelState] = {m.model_key: m.state for m in models}
    state_after.update({t.model_key: t.state for t in transitions if t.state is not None})
    served = judge_adapters(adapters, models, state_after, bare, observed, probes or {})
    transitions += served.transitions
    model_apps = {key: ModelApp.of(app.deployment, app.name, served.tables.get(key)) for key, app in bare.items()}
    base_routes = routes(models, transitions, model_apps, observed)
    routed = {r.model_id for r in base_routes}
    adapter_routes = [r for r in served.routes if r.base_model in routed]
    apps = (list(model_apps.values()) + [FrontendApp.of(base_routes + adapter_routes, serve.frontend_replicas)]
            + ([LeaseApp(lease)] if lease is not None else []) + observed.foreign())
    desired = ServeConfig(serve.http, tuple(apps))
    # No lease: a leftover lease app is not argus's to judge.
    return Plan(desired if config_differs(desired, observed, ignore=set() if lease is not None else {LEASE_APP})
                else None, transitions)


def renews_only(desired: ServeConfig, observed: Observed) -> bool:
    """Whether applying `desired` changes nothing but the lease."""
    return not config_differs(desired, observed, ignore={LEASE_APP})
