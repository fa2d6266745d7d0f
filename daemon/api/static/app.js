// argus web UI: plain DOM, no framework, nothing loaded from the internet. Every value from the
// server goes in through textContent (never innerHTML), so a spec cannot inject markup.
"use strict";

const DATA = JSON.parse(document.body.dataset.argus || "{}");
const POLL_MS = 2000;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(method, path, body, type) {
  const headers = { "X-Argus-UI": "1" };
  if (body !== undefined) headers["Content-Type"] = type || "application/json";
  const res = await fetch(path, { method, headers, credentials: "same-origin",
                                  body: body === undefined ? undefined : (typeof body === "string" ? body : JSON.stringify(body)) });
  if (res.status === 401) { location.href = "/ui/login?next=" + encodeURIComponent(location.pathname); throw new Error("signed out"); }
  const json = await res.json().catch(() => ({}));
  if (!res.ok) { const e = new Error(json.message || res.statusText); e.status = res.status; e.body = json; throw e; }
  return json;
}

function badge(state) { return h("span", { class: "badge " + state, "data-state": state }, state); }

// An adapter's load state on its base's replicas ("waiting for base", "loading", "loaded", ...).
function loadBadge(load) { return h("span", { class: "load " + load.replace(/ /g, "-"), "data-load": load }, load); }

// An adapter's base: a link where the caller may open it, else its public id.
function baseLink(base) {
  if (!base.model_id) return h("span", { class: "missing" }, `${base.ref} (not in argus)`);
  return base.model_key ? h("a", { href: "/ui/serving/" + encodeURIComponent(base.model_key), "data-base-link": "" }, base.model_id)
    : h("span", {}, base.model_id);
}

function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return Math.floor(s / 86400) + "d ago";
}

function notice(kind, text) { return h("div", { class: "notice " + kind, role: kind === "error" ? "alert" : "status" }, text); }

function problemList(problems, onPick) {
  return h("ul", { class: "problems", id: "problems" }, problems.map(p =>
    h("li", { onclick: () => onPick && onPick(p) }, h("span", { class: "where" }, `${p.line}:${p.col}`), p.message)));
}

function poll(fn) {
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch (e) { if (e.message === "signed out") return; }
    if (!document.hidden) setTimeout(tick, POLL_MS); else document.addEventListener("visibilitychange", tick, { once: true });
  };
  tick();
  return () => { stopped = true; };
}

// -- pages -------------------------------------------------------------------------------------

function loginPage(main) {
  main.append(h("div", { class: "login panel" },
    h("h1", {}, "Sign in to argus"),
    h("p", { class: "sub" }, "Use your API token. An admin makes one with ", h("code", {}, "argusctl token create --user <you>"), "."),
    h("div", { id: "sign-in-error" }),
    h("form", { method: "post", action: "/ui/session", onsubmit: signIn },
      h("label", { for: "token" }, "Token"),
      h("input", { type: "password", name: "token", id: "token", autocomplete: "off", required: true, autofocus: true }),
      h("p", {}, h("button", { class: "btn primary", type: "submit", id: "sign-in" }, "Sign in")))));
}

// Sign-in and sign-out go through fetch with the X-Argus-UI header, like every write by cookie:
// argusd refuses them from a plain form, so another site cannot sign you in or out.
async function signIn(event) {
  event.preventDefault();
  const token = document.getElementById("token").value;
  const res = await fetch("/ui/session", { method: "POST", credentials: "same-origin",
    headers: { "X-Argus-UI": "1", "Content-Type": "application/json" },
    body: JSON.stringify({ token, next: DATA.next || "/ui/serving" }) });
  const json = await res.json().catch(() => ({}));
  if (res.ok) { location.href = json.next; return; }
  document.getElementById("sign-in-error").replaceChildren(notice("error", json.message || res.statusText));
  const field = document.getElementById("token");
  field.value = "";  // a refused token is of no more use: ready for the next one
  field.focus();
}

async function signOut(event) {
  event.preventDefault();
  await fetch("/ui/logout", { method: "POST", credentials: "same-origin", headers: { "X-Argus-UI": "1" } });
  location.href = "/ui/login";
}

function listPage(main) {
  const body = h("div", { id: "models" }, h("p", { class: "muted" }, "Loading…"));
  main.append(
    h("div", { class: "head" },
      h("div", {}, h("h1", {}, DATA.admin ? "All models" : "Your models"),
        h("p", { class: "sub" }, "Each model answers on the OpenAI endpoint ", h("code", {}, DATA.openai_base_url), " under its model id.")),
      h("a", { class: "btn primary", href: "/ui/serving/new", id: "new-model" }, "+ New model")),
    h("div", { class: "panel" }, body));
  poll(async () => {
    const data = await api("GET", "/api/v2/serve/models");
    if (body.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;  // being typed in
    body.replaceChildren(renderTable(data));
  });
}

function renderTable(data) {
  if (!data.items.length && !data.rejected_specs.length) {
    return h("div", { class: "empty" }, h("h2", {}, "No models yet"),
      h("p", {}, "Create one from a ServingSpec: it becomes a commit in the GitOps repo, and argus serves it."),
      h("a", { class: "btn primary", href: "/ui/serving/new" }, "Create your first model"));
  }
  const rows = withAdaptersUnderTheirBase(data.items).map(m => h("tr", { "data-model": m.model_id, "data-key": m.model_key, "data-kind": m.kind },
    h("td", { class: m.under_base ? "under-base" : null }, h("a", { href: "/ui/serving/" + encodeURIComponent(m.model_key) }, m.model_id),
      m.kind === "adapter" ? h("div", { class: "muted", "data-base": "" }, "LoRA adapter on ", baseLink(m.base_model)) : null,
      m.kind === "model" && m.takes_adapters ? h("div", { class: "muted", "data-adapters": String(m.adapters.length) },
        `takes LoRA adapters · ${m.adapters.length} attached`) : null,
      DATA.admin ? h("div", { class: "muted" }, m.user_id) : null),
    h("td", {}, badge(m.state), m.kind === "adapter" ? h("div", {}, loadBadge(m.adapter_load)) : null,
      m.suspended ? h("div", { class: "muted", "data-suspended": "" }, suspendedBy(m)) : null),
    // An adapter has no replicas of its own: it runs on its base's (no scale control).
    h("td", {}, m.kind === "adapter" ? h("span", { class: "muted", title: "runs on its base model's replicas" }, "on base")
      : String(m.num_replicas)),
    h("td", { class: "reason" }, m.reason || "—"),
    h("td", { title: m.updated_at }, ago(m.updated_at)),
    h("td", {}, h("div", { class: "actions" },
      m.kind === "adapter" ? null : scaleControl(m),
      m.kind === "adapter" ? null : suspendButton(m).update(m),
      h("button", { class: "btn danger", "data-action": "delete", onclick: () => deleteModel(m) }, "Delete")))));
  const out = [h("table", {}, h("thead", {}, h("tr", {}, ["Model", "State", "Replicas", "Reason", "Changed", "Actions"].map(t => h("th", {}, t)))),
                   h("tbody", {}, rows))];
  if (data.rejected_specs.length) {
    out.push(h("h2", { style: "margin-top:18px" }, "Rejected specs (not applied)"),
      h("ul", { class: "problems" }, data.rejected_specs.map(r => h("li", {}, h("span", { class: "where" }, r.spec_path), r.problems[0].message))));
  }
  return h("div", {}, out);
}

// Each adapter right under its base when the base is in the list too (else where it sorts).
function withAdaptersUnderTheirBase(items) {
  const keys = new Set(items.map(m => m.model_key));
  const under = {};
  for (const m of items) {
    const base = m.kind === "adapter" && m.base_model.model_key;
    if (base && keys.has(base)) (under[base] = under[base] || []).push({ ...m, under_base: true });
  }
  return items.filter(m => !(m.kind === "adapter" && keys.has(m.base_model.model_key)))
    .flatMap(m => [m, ...(under[m.model_key] || [])]);
}

function scaleControl(m) {
  const input = h("input", { type: "number", min: "1", value: String(m.num_replicas), "aria-label": "replicas", "data-action": "replicas" });
  const button = h("button", { class: "btn", "data-action": "scale", onclick: async () => {
    button.disabled = true;
    try { await api("PATCH", "/api/v2/serve/models/" + encodeURIComponent(m.model_key), { num_replicas: Number(input.value) }); }
    catch (e) { alert(e.message); }
    button.disabled = false;
  } }, "Scale");
  return h("span", { class: "actions" }, input, button);
}

// Who suspended a model, in which commit: the commit its spec is at (it says suspended: true).
function suspendedBy(m) { return `suspended by ${m.commit_author} in ${(m.commit_sha || "").slice(0, 12)}`; }

// Suspend or Resume, by what the model's spec says now; update(m) relabels it after a poll.
// Either is a commit by you (none if the model is already so), like Scale.
function suspendButton(m) {
  let model = m;
  const button = h("button", { class: "btn", onclick: async () => {
    const verb = model.suspended ? "resume" : "suspend";
    if (verb === "suspend" && !confirm(`Suspend ${model.model_id}? Its replicas stop and free their GPUs; it keeps its id, ` +
                                       "history and adapters, and its requests get 503 until you resume it.")) return;
    button.disabled = true;
    try { await api("POST", `/api/v2/serve/models/${encodeURIComponent(model.model_key)}/${verb}`); }
    catch (e) { alert(e.message); }
    button.disabled = false;
  } });
  button.update = next => {
    model = next;
    button.dataset.action = model.suspended ? "resume" : "suspend";
    button.textContent = model.suspended ? "Resume" : "Suspend";
    return button;
  };
  return button;
}

async function deleteModel(m, after) {
  if (!confirm(`Delete ${m.model_id}? Its spec is removed in a commit by you, and argus stops serving it.`)) return;
  try { await api("DELETE", "/api/v2/serve/models/" + encodeURIComponent(m.model_key)); if (after) after(); }
  catch (e) { alert(e.message); }
}

const EXAMPLE = `# A ServingSpec. Paths use $HOME (your own tree) or $HOME/common/hf (shared models).
model_id: my-chat
model_source: $HOME/common/hf/SmolLM2-135M-Instruct
num_replicas: 1
# gpus_per_replica: 1
# engine_kwargs:
#   max_model_len: 2048
`;

function newPage(main) {
  const text = h("textarea", { id: "spec", spellcheck: "false", "aria-label": "ServingSpec YAML" });
  text.value = EXAMPLE;
  const gutter = h("div", { class: "gutter", "aria-hidden": "true" });
  const status = h("div", { id: "lint" });
  const result = h("div", {});
  const submit = h("button", { class: "btn primary", id: "submit", type: "button" }, "Create model");
  const syncGutter = () => {
    gutter.textContent = text.value.split("\n").map((_, i) => i + 1).join("\n");
    gutter.scrollTop = text.scrollTop;
  };
  const pick = p => {
    const lines = text.value.split("\n");
    let offset = 0;
    for (let i = 0; i < p.line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
    text.focus();
    text.setSelectionRange(offset + p.col - 1, offset + (lines[p.line - 1] || "").length);
  };
  let timer = null, seq = 0;
  const lint = async () => {
    const mine = ++seq;
    try {
      const out = await api("POST", "/api/v2/serve/lint", text.value, "application/yaml");
      if (mine !== seq) return;
      status.replaceChildren(out.problems.length ? problemList(out.problems, pick)
        : h("ul", { class: "problems" }, h("li", { class: "ok", id: "lint-ok" }, "Valid spec")));
      submit.disabled = out.problems.length > 0;
    } catch (e) { if (mine === seq) status.replaceChildren(notice("error", e.message)); }
  };
  text.addEventListener("input", () => { syncGutter(); clearTimeout(timer); timer = setTimeout(lint, 250); });
  text.addEventListener("scroll", syncGutter);
  submit.addEventListener("click", async () => {
    submit.disabled = true;
    result.replaceChildren(notice("info", "Committing and waiting for argusd to record it…"));
    try {
      const out = await api("POST", "/api/v2/serve/models", text.value, "application/yaml");
      location.href = "/ui/serving/" + encodeURIComponent(out.model_key);
    } catch (e) {
      result.replaceChildren(notice("error", e.message), e.body && e.body.problems ? problemList(e.body.problems, pick) : "");
      submit.disabled = false;
    }
  });
  main.append(
    h("h1", {}, "New model"),
    h("p", { class: "sub" }, "Write a ServingSpec. It is checked as you type by the same rules as ",
      h("code", {}, "argusctl lint"), " and the repo's hook, then committed as ", h("strong", {}, DATA.user),
      " to ", h("code", {}, `models.d/${DATA.user}/`), "."),
    h("div", { class: "panel" }, h("div", { class: "editor" }, gutter, text), status,
      h("p", { class: "actions", style: "margin-top:14px" }, submit, h("a", { class: "btn", href: "/ui/serving" }, "Cancel")), result));
  syncGutter();
  lint();
}

function detailPage(main) {
  const key = DATA.model_key;
  const header = h("div", { class: "head" }, h("h1", {}, "Loading…"));
  const facts = h("dl", { class: "facts", id: "facts" });
  const serve = h("div", { id: "serve-status" });
  const events = h("tbody", {});
  const spec = h("pre", { id: "resolved-spec" });
  const usage = h("div", { id: "usage" });
  const message = h("div", {});
  const adaptersBody = h("div", {});
  const adaptersPanel = h("div", { class: "panel", id: "adapters-panel", hidden: true }, h("h2", {}, "LoRA adapters on this model"), adaptersBody);
  const traffic = h("div", { class: "panel", id: "traffic" }, h("h2", {}, "Traffic, last 30 minutes"), h("p", { class: "muted" }, "Loading…"));
  let lastEvent = 0, loaded = false, actions = null, toggle = null;
  main.append(header, message,
    h("div", { class: "grid" },
      h("div", { class: "panel" }, h("h2", {}, "Model"), facts),
      h("div", { class: "panel" }, h("h2", {}, "Live in Ray Serve"), serve)),
    adaptersPanel, traffic,
    h("div", { class: "panel" }, h("h2", {}, "Call it"), usage),
    h("div", { class: "grid" },
      h("div", { class: "panel" }, h("h2", {}, "Resolved spec"), spec),
      h("div", { class: "panel" }, h("h2", {}, "Events"),
        h("table", { class: "events" }, h("thead", {}, h("tr", {}, h("th", {}, "Time"), h("th", {}, "Event"), h("th", {}, "What"))), events))));
  const stop = poll(async () => {
    let d;
    try { d = await api("GET", `/api/v2/serve/models/${encodeURIComponent(key)}?after=${lastEvent}`); }
    catch (e) {
      if (e.status === 404) { stop(); main.replaceChildren(); notFoundPage(main, `There is no model ${key} among yours.`); }
      throw e;
    }
    const m = d.model;
    const gone = m.state === "DELETED";
    const adapter = m.kind === "adapter";
    if (!actions || (gone && !actions.dataset.gone)) {  // made once, so a number being typed survives the polls
      toggle = gone || adapter ? null : suspendButton(m);
      actions = gone ? h("a", { class: "btn", href: "/ui/serving", "data-gone": "1" }, "Back to models")
        : h("div", { class: "actions" }, adapter ? null : scaleControl(m), toggle,
            h("button", { class: "btn danger", "data-action": "delete", onclick: () => deleteModel(m) }, "Delete"));
    }
    if (toggle && !gone) toggle.update(m);
    header.replaceChildren(
      h("div", {}, h("h1", { id: "model-id" }, m.model_id, " ", badge(m.state), adapter ? [" ", loadBadge(m.adapter_load)] : null),
        h("p", { class: "sub" }, m.reason || `Spec ${m.spec_path}, last changed by ${m.commit_author}`),
        m.suspended && !gone ? h("p", { class: "sub", id: "suspended" }, suspendedBy(m)[0].toUpperCase() + suspendedBy(m).slice(1),
          ": no replica runs and its requests get 503 until it is resumed.") : null),
      actions);
    const size = adapter
      ? [["Kind", "LoRA adapter"], ["Base model", baseLink(m.base_model)], ["Load state", loadBadge(m.adapter_load)], ["Adapter folder", m.model_source]]
      : [["Replicas", m.replicas ? m.replicas.line : m.num_replicas], ["GPUs per replica", m.gpus_per_replica], ["Source", m.model_source],
         ["Adapters", m.takes_adapters ? `takes LoRA adapters: rank up to ${m.takes_adapters.max_rank}, ${m.takes_adapters.max_loaded} loaded at once per replica` +
           (m.takes_adapters.users && m.takes_adapters.users.length ? `, also from ${m.takes_adapters.users.join(", ")}` : ", its owner's only") : "takes none"]];
    facts.replaceChildren(...[["Model id", m.model_id], ["Owner", m.user_id], ...size, ["Spec", m.spec_path],
      ["Generation", `${m.generation} (applied: ${m.applied_generation ?? "—"})`],
      ["Last commit", `${(m.commit_sha || "").slice(0, 12)} by ${m.commit_author}`], ["Key", m.model_key],
      ["Updated", `${m.updated_at} (${ago(m.updated_at)})`]].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v instanceof Node ? v : String(v))]));
    const s = d.serve_status;
    const onBase = adapter && s.base_model_id
      ? h("p", { id: "adapter-table" }, `Runs on the replicas of base model ${s.base_model_id}: `,
          s.in_adapter_table ? `in its adapter table (generation ${s.table_generation})` : "not in its adapter table") : null;
    serve.replaceChildren(!s.available ? h("p", { class: "muted" }, s.reason)
      : !s.deployed ? h("div", {}, onBase, h("p", { class: "muted" }, s.reason))
      : h("div", {}, onBase, h("p", {}, `Application ${s.application}: `, badge(s.status || "?"), s.message ? h("span", { class: "muted" }, " " + s.message) : ""),
          h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Replica"), h("th", {}, "State"), h("th", {}, "Node"))),
            h("tbody", {}, s.replicas.map(r => h("tr", {}, h("td", {}, r.replica_id), h("td", {}, badge(r.state)), h("td", {}, r.node_ip || "")))))));
    adaptersPanel.hidden = adapter || !(m.takes_adapters || (m.adapters && m.adapters.length));
    if (!adapter) adaptersBody.replaceChildren(m.adapters.length ? h("table", { id: "adapters" },
        h("thead", {}, h("tr", {}, ["Adapter", "Owner", "Load state", "Reason"].map(t => h("th", {}, t)))),
        h("tbody", {}, m.adapters.map(a => h("tr", { "data-adapter": a.model_id },
          h("td", {}, a.model_key ? h("a", { href: "/ui/serving/" + encodeURIComponent(a.model_key) }, a.model_id) : a.model_id),
          h("td", {}, a.user_id), h("td", {}, loadBadge(a.adapter_load)), h("td", { class: "reason" }, a.reason || "—")))))
      : h("p", { class: "muted", id: "adapters" }, "No adapters yet. An adapter spec names this model in ", h("code", {}, "base_model:"), "."));
    spec.textContent = d.resolved_spec_yaml;
    if (!loaded) { usage.replaceChildren(usageExamples(d.openai_base_url, m.model_id)); loaded = true; }
    for (const e of d.events) {
      events.prepend(h("tr", { "data-event": e.event_type }, h("td", { title: e.time }, e.time.slice(0, 19).replace("T", " ")),
        h("td", { class: "type" }, e.event_type), h("td", {}, e.text)));
    }
    lastEvent = d.events_next_after;
    const t = await api("GET", `/api/v2/serve/models/${encodeURIComponent(key)}/traffic`);
    traffic.replaceChildren(h("h2", {}, `Traffic, last ${Math.round((t.window_seconds || 1800) / 60)} minutes`), ...trafficCharts(t).filter(Boolean));
  });
}

// -- the traffic chart: inline SVG, drawn here from the API's points (no chart library) -------------

const SVG = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function niceMax(v) {  // the axis top: 1, 2 or 5 times a power of ten, at least v
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  return [1, 2, 5, 10].map(m => m * p).find(m => m >= v);
}

function fmt(v) { return v >= 100 ? Math.round(v).toString() : v >= 10 ? v.toFixed(1).replace(/\.0$/, "") : v.toFixed(2).replace(/\.?0+$/, ""); }

// One small chart: lines of [{at, value|null}] over the window; null is a gap.
function miniChart(id, title, unit, lines, t0, t1, from) {
  const W = 520, H = 120, L = 44, R = 8, T = 8, B = 20;
  const top = niceMax(Math.max(0, ...lines.flatMap(l => l.values.filter(v => v !== null))));
  const x = at => L + (W - L - R) * (at - t0) / Math.max(1, t1 - t0);
  const y = v => T + (H - T - B) * (1 - v / top);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title, id });
  for (const v of [0, top / 2, top]) {
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid-line" }),
               svgEl("text", { x: L - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, fmt(v)));
  }
  svg.append(svgEl("text", { x: L, y: H - 4, class: "tick" }, from), svgEl("text", { x: W - R, y: H - 4, class: "tick", "text-anchor": "end" }, "now"));
  for (const line of lines) {
    let run = [];
    const flush = () => { if (run.length) svg.append(svgEl(run.length > 1 ? "polyline" : "circle",
      run.length > 1 ? { points: run.join(" "), class: "series " + line.cls } : { cx: run[0].split(",")[0], cy: run[0].split(",")[1], r: 2, class: "dot " + line.cls })); run = []; };
    line.ats.forEach((at, i) => { const v = line.values[i]; if (v === null) flush(); else run.push(`${x(at).toFixed(1)},${y(v).toFixed(1)}`); });
    flush();
  }
  return h("figure", { class: "mini" }, h("figcaption", {}, title, " ", h("span", { class: "muted" }, unit)), svg);
}

function span(seconds) { return seconds >= 90 ? `−${Math.round(seconds / 60)} min` : `−${Math.round(seconds)} s`; }

// The model page's traffic panel: a one-line summary and two small charts; a line saying why
// when Ray's metrics cannot be read (the chart keeps what it had, with a gap).
function trafficCharts(t) {
  const pts = t.points || [];
  const good = pts.filter(p => p.requests_per_s !== null);
  const problem = t.problem ? h("p", { class: "muted", id: "traffic-problem" }, (good.length ? "Ray's metrics cannot be read now: " : "No traffic chart: ") + t.problem) : null;
  if (!good.length) return [problem || h("p", { class: "muted", id: "traffic-problem" }, `No points yet: argusd reads Ray Serve's metrics every ${t.interval_seconds} s.`)];
  const now = pts[pts.length - 1].at, t0 = Math.max(now - t.window_seconds, pts[0].at - (pts[0].seconds || 0)), ats = pts.map(p => p.at);
  const perMin = k => pts.map(p => p[k] === null ? null : p[k] * 60);
  const sum = k => good.reduce((a, p) => a + p[k] * p.seconds, 0);
  const requests = Math.round(sum("requests_per_s")), failures = Math.round(sum("failures_per_s"));
  const timed = good.filter(p => p.mean_latency_ms !== null);
  const mean = timed.reduce((a, p) => a + p.mean_latency_ms * p.requests_per_s * p.seconds, 0) / Math.max(1e-9, timed.reduce((a, p) => a + p.requests_per_s * p.seconds, 0));
  const from = span(now - t0);
  return [problem,
    h("p", { id: "traffic-summary" }, `${requests} requests, `, h("span", { class: failures ? "failed" : "" }, `${failures} failed`),
      timed.length ? `, mean latency ${Math.round(mean)} ms` : "", h("span", { class: "muted" }, ` since ${from.slice(1)} ago · counted by Ray Serve on this model's replicas`)),
    h("div", { class: "charts" },
      miniChart("chart-requests", "Requests", "per minute · failed in red", [
        { cls: "requests", ats, values: perMin("requests_per_s") }, { cls: "failures", ats, values: perMin("failures_per_s") }], t0, now, from),
      miniChart("chart-latency", "Mean latency", "ms", [{ cls: "latency", ats, values: pts.map(p => p.mean_latency_ms) }], t0, now, from))];
}

function notFoundPage(main, why) {
  main.append(h("div", { class: "empty panel", id: "not-found" },
    h("h1", {}, "Not found"),
    h("p", {}, why || `There is no page at ${DATA.path || location.pathname}.`),
    h("a", { class: "btn primary", href: "/ui/serving", id: "back" }, "Back to your models")));
}

function usageExamples(base, modelId) {
  const curl = `curl ${base}/chat/completions \\\n  -H 'Content-Type: application/json' \\\n  -d '{"model": "${modelId}", "temperature": 0, "messages": [{"role": "user", "content": "Hello"}]}'`;
  const py = `from openai import OpenAI\n\nclient = OpenAI(base_url="${base}", api_key="unused")\nreply = client.chat.completions.create(\n    model="${modelId}",\n    temperature=0,\n    messages=[{"role": "user", "content": "Hello"}],\n)\nprint(reply.choices[0].message.content)`;
  const pre = h("pre", { id: "example" }, curl);
  const tabs = h("div", { class: "tabs" });
  const show = (which, text) => { pre.textContent = text; for (const b of tabs.children) b.classList.toggle("on", b.dataset.tab === which); };
  tabs.append(h("button", { class: "on", "data-tab": "curl", onclick: () => show("curl", curl) }, "curl"),
              h("button", { "data-tab": "python", onclick: () => show("python", py) }, "Python (openai)"));
  return h("div", {}, tabs, pre, h("p", { class: "muted" }, "The endpoint has no authentication; the model answers once it is RUNNING."));
}

document.addEventListener("DOMContentLoaded", () => {
  const main = document.getElementById("main");
  main.replaceChildren();
  const signOutForm = document.getElementById("sign-out");
  if (signOutForm) signOutForm.addEventListener("submit", signOut);
  ({ login: loginPage, list: listPage, new: newPage, detail: detailPage, notfound: notFoundPage })[document.body.dataset.page](main);
});
