"""A FAILED model whose serving generation serves on beside its failed change (rolled back):
that generation stays on the endpoint, whatever happens to its app. Pure.

While Serve routes the model's public id to that generation, rollout.keeps_serving keeps its
app as it runs. When Serve loses it (Ray restarted, its app deleted behind argus's back, the
front end's entry gone), argus deploys it again from the store (desired.Serving: its
deployment as Serve ran it, recorded when the change failed beside it), answers the model's
clients 503 "starting" meanwhile, and routes them back to it once a replica runs. Not the
wanted spec: that one failed; a commit that fixes it rolls out as usual. Losing it and
serving again are recorded (REPLICAS_LOST, RECOVERED), with the failure kept in the summary.
"""
from __future__ import annotations

from dataclasses import replace

from daemon.core.states import EventType, ModelState
from daemon.replicas.names import model_app_name
from daemon.serving.desired import DesiredModel, Transition
from daemon.serving.judge import replicas_lost
from daemon.serving.observe import Observed
from daemon.serving.rollout import Arrangement, Slots, same_engine, starting
from daemon.serving.serve_config import ModelApp


def restore_slot(model: DesiredModel, slots: Slots, observed: Observed) -> str | None:
    """The app a FAILED model's serving generation goes back in when no app of it is routed (an
    app Serve still holds of it, else the first slot); None: nothing to restore (it is routed,
    or the model is not FAILED beside a serving generation)."""
    if model.state != ModelState.FAILED or model.serving is None or slots.live is not None:
        return None
    held = [name for name in slots.held if isinstance(observed.apps[name].config, ModelApp)
            and same_engine(observed.apps[name].config.deployment, model.serving.deployment)]
    return held[0] if held else model_app_name(model.model_key)


def restore(model: DesiredModel, slot: str, observed: Observed, drain_timeout_s: float | None = None) -> Arrangement:
    """The serving generation's app, deployed again; the public id reaches it once Serve runs a
    replica of it (at zero by its own decision counts: a request wakes it), 503 "starting" until then.
    `drain_timeout_s`: the config's drain bound (the store keeps what replicas run, not that)."""
    assert model.serving is not None
    app = ModelApp.of(replace(model.serving.deployment, drain_timeout_s=drain_timeout_s), slot)
    seen = observed.server(model.model_key, slot)
    runs = (seen is not None and app.same_server(seen[0].config)
            and (seen[1].running_replicas > 0 or model.serving.deployment.may_idle))
    return Arrangement((app,), slot) if runs else Arrangement((app,), None, None, starting(model))


def judge_serving(model: DesiredModel, slots: Slots, slot: str | None, observed: Observed) -> Transition | None:
    """A FAILED model's serving generation against what Serve reports: lost once (Serve has no
    running replica of it), and serving again once the public id is routed to a replica."""
    if model.state != ModelState.FAILED or model.serving is None:
        return None
    name = slots.live or slot
    if name is None:
        return None
    seen = observed.server(model.model_key, name)
    idle = model.serving.deployment.may_idle and seen is not None   # at zero by Serve's own decision
    lost = None if idle else replicas_lost(seen, observed.apps.get(name), in_sync=slots.live is not None)
    said = model.last_event is not None and model.last_event[0] == EventType.REPLICAS_LOST
    which = (f"serving generation {model.applied_generation}" if model.applied_generation is not None
             else "the serving generation")
    if lost is not None:
        if said:
            return None
        return Transition(model.model_key, ModelState.FAILED, EventType.REPLICAS_LOST,
                          {"message": f"{which}: {lost}"}, error_summary=f"{model.serving.failure}: {lost}")
    if said and slots.live is not None:
        return Transition(model.model_key, ModelState.FAILED, EventType.RECOVERED,
                          {"message": f"{which} serves again"}, error_summary=model.serving.failure)
    return None
