"""The management API and the UI's routes, against a real argusd
(--sync-only) serving them, a real GitOps repo guarded by the pre-receive hook, and tokens
made by the real CLI. Every write must be exactly one commit by the caller."""
import json
import re
import subprocess
import sys

import pytest

from daemon.errors import ConflictError
from helpers import ApiDaemon, run_argusctl

USERS = {"alice": "alice@argus.local", "bob": "bob@argus.local", "ops": "ops@argus.local"}
SPEC = "model_id: {name}\nmodel_source: $HOME/common/hf/m\n"
YAML = "application/yaml"
MODELS = "/api/v2/serve/models"
FROM_THE_UI = {"X-Argus-UI": "1", "Sec-Fetch-Site": "same-origin"}  # what the UI's own fetch sends


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    daemon = ApiDaemon(tmp_path_factory.mktemp("api"), USERS)
    daemon.alice, daemon.bob, daemon.admin = daemon.token("alice"), daemon.token("bob"), daemon.token("ops", "--admin")
    yield daemon
    daemon.stop()


def create(api, token, name, body=None):
    return api.http("POST", MODELS, token=token, body=body or SPEC.format(name=name), ctype=YAML)


def test_create_list_get_scale_delete_each_write_is_one_commit_by_the_caller(api):
    commits = len(api.git_log())
    status, out, _ = create(api, api.alice, "happy")
    assert status == 202, out
    assert out["state"] == "QUEUED" and out["model_id"].startswith("alice-") and out["model_id"].endswith("-happy")
    key = out["model_key"]
    assert api.git_log()[0] == "alice <alice@argus.local>|apply alice/happy: new model"
    assert len(api.git_log()) == commits + 1

    status, listed, _ = api.http("GET", MODELS, token=api.alice)
    assert status == 200 and listed["openai_base_url"] == "http://127.0.0.1:8000/v1"
    assert key in [m["model_key"] for m in listed["items"]]

    status, detail, _ = api.http("GET", f"{MODELS}/{key}", token=api.alice)
    assert status == 200 and detail["model"]["state"] == "QUEUED"
    assert "num_replicas: 1" in detail["resolved_spec_yaml"] and "model_source:" in detail["resolved_spec_yaml"]
    assert detail["events"] and "alice <alice@argus.local>" in detail["events"][0]["text"]
    assert detail["serve_status"] == {"available": False,
                                      "reason": "argusd runs --sync-only: it does not talk to Ray Serve"}

    status, out, _ = api.http("PATCH", f"{MODELS}/{key}", token=api.alice, body={"num_replicas": 2})
    assert status == 202 and out["action"] == "scaled", out
    assert api.git_log()[0] == "alice <alice@argus.local>|scale alice/happy: num_replicas 1 -> 2"
    status, detail, _ = api.http("GET", f"{MODELS}/{key}?after={detail['events_next_after']}", token=api.alice)
    assert detail["model"]["num_replicas"] == 2 and any("num_replicas 1 -> 2" in e["text"] for e in detail["events"])

    status, out, _ = api.http("PATCH", f"{MODELS}/{key}", token=api.alice, body={"num_replicas": 2})
    assert status == 202 and out["action"] == "unchanged" and out["commit"] is None  # no empty commit

    status, out, _ = api.http("DELETE", f"{MODELS}/{key}", token=api.alice)
    assert status == 202 and out["state"] in ("DELETING", "DELETED"), out
    assert api.git_log()[0] == "alice <alice@argus.local>|delete alice/happy"
    assert len(api.git_log()) == commits + 3
    status, listed, _ = api.http("GET", MODELS, token=api.alice)
    assert key not in [m["model_key"] for m in listed["items"] if m["state"] != "DELETING"]


def test_users_never_see_or_change_each_others_models(api):
    status, out, _ = create(api, api.alice, "mine")
    key = out["model_key"]
    commits = len(api.git_log())
    _, listed, _ = api.http("GET", MODELS, token=api.bob)
    assert key not in [m["model_key"] for m in listed["items"]]
    for method, body in (("GET", None), ("PATCH", {"num_replicas": 2}), ("DELETE", None)):
        status, out, _ = api.http(method, f"{MODELS}/{key}", token=api.bob, body=body)
        assert status == 404 and key in out["message"], (method, out)  # 404, not 403: nothing leaks
    status, out, _ = api.http("GET", f"{MODELS}?user=alice", token=api.bob)
    assert status == 403
    # bob's spec of the same name is his own model; alice's is untouched.
    status, out, _ = create(api, api.bob, "mine")
    assert status == 202 and out["model_key"] != key and out["model_id"].startswith("bob-")
    assert api.git_log()[0] == "bob <bob@argus.local>|apply bob/mine: new model"
    # An admin reads everyone's models, filters by user, but cannot change alice's.
    _, everyone, _ = api.http("GET", MODELS, token=api.admin)
    assert {"alice", "bob"} <= {m["user_id"] for m in everyone["items"]}
    _, only, _ = api.http("GET", f"{MODELS}?user=alice", token=api.admin)
    assert {m["user_id"] for m in only["items"]} == {"alice"}
    assert api.http("GET", f"{MODELS}/{key}", token=api.admin)[0] == 200
    status, out, _ = api.http("DELETE", f"{MODELS}/{key}", token=api.admin)
    assert status == 403 and "only its owner" in out["message"]
    assert len(api.git_log()) == commits + 1  # bob's create only


@pytest.mark.parametrize("body, status, code, where", [
    ("model_id: [broken\n", 400, "yaml_invalid", (2, 1)),
    ("model_id: ok\nmodel_source: $HOME/common/hf/m\nnum_replicas: 99\n", 422, "spec_invalid", (3, 15)),
    ("model_id: ok\nmodel_source: $HOME/common/hf/m\nnum_gpus: 1\n", 422, "spec_invalid", (3, 1)),
    ("model_id: ok\nmodel_source: /etc\n", 403, "path_forbidden", (2, 15)),
    ("model_id: ok\nmodel_source: /srv/../etc\n", 403, "path_forbidden", (2, 15)),
])
def test_bad_specs_get_the_seeds_status_codes_with_line_and_column_and_change_nothing(api, body, status, code, where):
    commits = len(api.git_log())
    got, out, _ = create(api, api.alice, "x", body=body)
    assert got == status and out["error"] == code, out
    assert (out["problems"][0]["line"], out["problems"][0]["col"]) == where, out
    assert out["problems"][0]["message"]
    assert len(api.git_log()) == commits


def test_another_users_path_is_forbidden(api):
    got, out, _ = create(api, api.alice, "x", body="model_id: x\nmodel_source: $HOME/../bob/m\n")
    assert got == 403 and "'..'" in out["problems"][0]["message"]
    bobs = api.tmp / "private" / "users" / "bob" / "m"
    got, out, _ = create(api, api.alice, "x", body=f"model_id: x\nmodel_source: {bobs}\n")
    assert got == 403 and "in user 'bob''s tree" in out["problems"][0]["message"], out


def test_a_write_the_model_folder_cannot_take_is_refused_before_git_with_the_limit_named(api):
    """The API's writes ask the same judge as lint, the hook and argusd, with the folder's facts."""
    folder = api.tmp / "private" / "hf" / "short"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"max_position_embeddings": 128}')
    commits = len(api.git_log())
    body = "model_id: short\nmodel_source: $HOME/common/hf/short\nengine_kwargs:\n  max_model_len: 4096\n"
    got, out, _ = create(api, api.alice, "short", body=body)
    assert got == 422 and out["error"] == "spec_invalid", out
    (problem,) = out["problems"]
    assert (problem["line"], problem["col"]) == (4, 18)
    assert problem["message"].startswith("engine_kwargs.max_model_len 4096 is above the model's own limit of 128 "
                                         "tokens (max_position_embeddings 128 in its config.json)"), problem
    # A folder that leads through a symlink into bob's tree: forbidden, and nothing in it is read.
    (api.tmp / "private" / "users" / "bob" / "m").mkdir(parents=True, exist_ok=True)
    link = api.tmp / "private" / "hf" / "bobs"
    if not link.is_symlink():
        link.symlink_to(api.tmp / "private" / "users" / "bob" / "m")
    got, out, _ = create(api, api.alice, "x", body="model_id: x\nmodel_source: $HOME/common/hf/bobs\n")
    assert got == 403 and out["error"] == "path_forbidden" and "leads through a symlink" in out["problems"][0]["message"]
    assert len(api.git_log()) == commits


def test_auth_and_request_errors(api):
    assert api.http("GET", MODELS)[0] == 401
    status, out, headers = api.http("GET", MODELS, token="argus_nope_nope")
    assert status == 401 and headers.get("www-authenticate") == "Bearer"
    assert api.http("GET", MODELS, headers={"Authorization": "Basic abc"})[0] == 401
    assert api.http("GET", f"{MODELS}/m-0000000000000000", token=api.alice)[0] == 404
    status, out, _ = api.http("POST", MODELS, token=api.alice, body="{}", ctype="application/json")
    assert status == 415 and "application/yaml" in out["message"]
    status, out, _ = api.http("PATCH", f"{MODELS}/m-0000000000000000", token=api.alice, body={"num_replicas": "x"})
    assert status == 422 and "num_replicas" in out["message"]
    # Who you are is checked before what you sent: no token, 401 whatever the body.
    assert api.http("PATCH", f"{MODELS}/m-0000000000000000", body={"num_replicas": "x"})[0] == 401
    status, out, _ = api.http("GET", "/api/v2/serve/status", token=api.alice)
    assert status == 403 and "--admin" in out["message"]
    status, out, _ = api.http("GET", "/api/v2/serve/status", token=api.admin)
    assert status == 200 and out["sync"]["branch"] == "main" and out["argusd"]["serving"] is False
    # A revoked token stops working at once.
    token = api.token("alice")
    token_id = token.split("_")[1]
    assert api.http("GET", MODELS, token=token)[0] == 200
    assert run_argusctl("token", "revoke", token_id, env=api.env).returncode == 0
    assert api.http("GET", MODELS, token=token)[0] == 401


def test_a_missing_gitops_repo_is_503_naming_the_fix(tmp_path):
    daemon = ApiDaemon(tmp_path, {"alice": "alice@argus.local"})
    try:
        token = daemon.token("alice")
        (tmp_path / "gitops.git").rename(tmp_path / "moved.git")
        status, out, _ = create(daemon, token, "x")
        assert status == 503 and out["error"] == "unavailable" and "argusctl init" in out["message"], out
    finally:
        daemon.stop()


def test_openapi_document_names_every_route(api):
    status, doc, _ = api.http("GET", "/api/v2/openapi.json")
    assert status == 200
    paths = doc["paths"]
    assert set(paths[MODELS]) == {"get", "post"}
    assert set(paths[MODELS + "/{model_key}"]) == {"get", "patch", "delete"}
    assert set(paths[MODELS + "/{model_key}/suspend"]) == set(paths[MODELS + "/{model_key}/resume"]) == {"post"}
    assert "get" in paths["/api/v2/serve/status"]


def test_token_cli_shows_a_token_once_and_never_stores_it(api):
    result = run_argusctl("token", "create", "--user", "bob", "-o", "json", env=api.env)
    made = json.loads(result.stdout)
    listed = run_argusctl("token", "list", "-o", "json", env=api.env).stdout
    assert made["token"] not in listed and made["token_id"] in listed
    raw = (api.tmp / "state" / "api-tokens.db").read_bytes()
    assert made["token"].encode() not in raw
    bad = run_argusctl("token", "create", "--user", "mallory", env=api.env)
    assert bad.returncode == 2 and "users map" in bad.stderr
    bad = run_argusctl("token", "create", "--user", "bob", "--email", "evil@example.com", env=api.env)
    assert bad.returncode == 2 and "git_identities" in bad.stderr


def test_ui_pages_sign_in_by_cookie_and_guard_writes(api):
    """Routes answer 200, the key links are there, the 8000 endpoint is shown."""
    status, _, headers = api.http("GET", "/ui/serving")
    assert status == 303 and headers["location"].startswith("/ui/login")
    status, page, _ = api.http("GET", "/ui/login")
    assert status == 200 and '/ui/static/app.js' in page and 'data-page="login"' in page
    status, out, headers = api.http("POST", "/ui/session", body={"token": api.alice, "next": "/ui/serving/new"},
                                    headers=FROM_THE_UI)
    assert status == 200 and out == {"next": "/ui/serving/new"}, out
    cookie = headers["set-cookie-all"][0]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    session = {"Cookie": cookie.split(";")[0]}
    for path in ("/ui/serving", "/ui/serving/new", "/ui/serving/m-0000000000000000"):
        status, page, headers = api.http("GET", path, headers=session)
        assert status == 200, path
        assert 'href="/ui/serving"' in page and 'href="/ui/serving/new"' in page
        assert "http://127.0.0.1:8000/v1" in page
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert api.http("GET", "/ui/static/app.js")[0] == 200 and api.http("GET", "/ui/static/x.js")[0] == 404
    # A cookie alone cannot write (a cross-site form could send it); the UI's header can.
    spec = SPEC.format(name="bycookie")
    status, out, _ = api.http("POST", MODELS, body=spec, ctype=YAML, headers=session)
    assert status == 403 and "X-Argus-UI" in out["message"]
    status, out, _ = api.http("POST", MODELS, body=spec, ctype=YAML, headers={**session, "X-Argus-UI": "1"})
    assert status == 202, out
    status, out, headers = api.http("POST", "/ui/session", body={"token": "argus_wrong"}, headers=FROM_THE_UI)
    assert status == 401 and "unknown or revoked" in out["message"] and not headers["set-cookie-all"]
    # Only pages of this UI are a place to go after signing in.
    status, out, _ = api.http("POST", "/ui/session", body={"token": api.alice, "next": "https://evil.example/"},
                              headers=FROM_THE_UI)
    assert status == 200 and out == {"next": "/ui/serving"}
    # The sign-in body is strict too: an unknown key is refused, not ignored.
    status, out, headers = api.http("POST", "/ui/session", body={"token": api.alice, "admin": True},
                                    headers=FROM_THE_UI)
    assert status == 422 and "admin: Extra inputs are not permitted" in out["message"] and not headers["set-cookie-all"]


SIGN_IN_FROM_ELSEWHERE = [
    # what a form on another site sends (login CSRF, issue 21.7): its Origin, no UI header
    ({"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, "urlencoded"),
    ({"Origin": "https://evil.example"}, "json"),
    # the UI's header but the browser says the request is not from this origin
    ({**{"X-Argus-UI": "1"}, "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, "json"),
    ({"X-Argus-UI": "1", "Sec-Fetch-Site": "same-site"}, "json"),
    ({}, "json"),  # no header at all
]


@pytest.mark.parametrize("headers, kind", SIGN_IN_FROM_ELSEWHERE)
def test_sign_in_and_sign_out_from_another_site_are_refused(api, headers, kind):
    """Login CSRF: another site must not sign a visitor into the attacker's account (with the
    attacker's valid token), nor out of theirs. The same rule as every write by cookie."""
    body = f"token={api.alice}" if kind == "urlencoded" else {"token": api.alice}
    ctype = "application/x-www-form-urlencoded" if kind == "urlencoded" else None
    status, out, got = api.http("POST", "/ui/session", body=body, ctype=ctype, headers=headers)
    assert status == 403 and out["error"] == "forbidden", out
    assert not got["set-cookie-all"]  # no session
    _, _, signed = api.http("POST", "/ui/session", body={"token": api.alice}, headers=FROM_THE_UI)
    session = {"Cookie": signed["set-cookie-all"][0].split(";")[0]}
    status, out, got = api.http("POST", "/ui/logout", headers={**session, **headers})
    assert status == 403 and not got["set-cookie-all"], out
    assert api.http("GET", "/ui/serving", headers=session)[0] == 200  # still signed in
    status, out, got = api.http("POST", "/ui/logout", headers={**session, **FROM_THE_UI})
    assert status == 200 and "argus_session=" in got["set-cookie-all"][0]
    assert api.http("GET", "/ui/serving", headers=session)[0] == 303  # signed out: the session is gone


def test_a_write_by_cookie_from_another_site_is_refused_even_with_the_ui_header(api):
    _, _, signed = api.http("POST", "/ui/session", body={"token": api.alice}, headers=FROM_THE_UI)
    session = {"Cookie": signed["set-cookie-all"][0].split(";")[0]}
    commits = len(api.git_log())
    status, out, _ = api.http("POST", MODELS, body=SPEC.format(name="csrf"), ctype=YAML,
                              headers={**session, "X-Argus-UI": "1", "Sec-Fetch-Site": "cross-site"})
    assert status == 403 and "cross-site" in out["message"], out
    assert len(api.git_log()) == commits


@pytest.mark.parametrize("body, reason", [
    ({"num_replicas": "2"}, "valid integer"),
    ({"num_replicas": True}, "valid integer"),
    ({"num_replicas": 2.0}, "valid integer"),
    ({"num_replicas": 2.5}, "valid integer"),
    ({"num_replicas": None}, "valid integer"),
    ({"num_replicas": 0}, "greater than or equal to 1"),
    ({"num_replicas": 2, "gpus_per_replica": 1}, "gpus_per_replica: Extra inputs are not permitted"),
    ({"replicas": 2}, "num_replicas: Field required"),
    ({}, "num_replicas: Field required"),
    ([2], "valid dictionary"),
    ("2", "valid dictionary"),
])
def test_patch_takes_only_a_whole_number_of_replicas_and_nothing_else(api, body, reason):
    """Strict types at the API edge, as in specs: no coercion ("2", true -> 1, 2.0), no unknown keys."""
    _, out, _ = create(api, api.alice, "strict")
    key = out["model_key"]
    commits = len(api.git_log())
    raw = json.dumps(body) if not isinstance(body, dict) else body
    status, out, _ = api.http("PATCH", f"{MODELS}/{key}", token=api.alice, body=raw, ctype="application/json")
    assert status == 422 and out["error"] == "invalid_request" and reason in out["message"], out
    assert '{"num_replicas": N}' in out["message"]
    assert len(api.git_log()) == commits


@pytest.mark.parametrize("value, says", [('"2"', "a string"), ("true", "a boolean"), ("2.0", "a decimal")])
def test_post_takes_spec_types_strictly_too(api, value, says):
    commits = len(api.git_log())
    status, out, _ = create(api, api.alice, "x", body=SPEC.format(name="x") + f"num_replicas: {value}\n")
    assert status == 422 and out["error"] == "spec_invalid" and says in out["problems"][0]["message"], out
    assert (out["problems"][0]["line"], out["problems"][0]["col"]) == (3, 15)
    assert len(api.git_log()) == commits


def spec_in_repo(api, path: str) -> str:
    return subprocess.run(["git", "show", f"HEAD:{path}"], cwd=api.tmp / "gitops.git", capture_output=True,
                          text=True, check=True).stdout


def test_suspend_and_resume_are_one_commit_each_by_the_owner_and_none_when_already_so(api):
    _, out, _ = create(api, api.alice, "sleepy")
    key = out["model_key"]
    commits = len(api.git_log())
    status, out, _ = api.http("POST", f"{MODELS}/{key}/suspend", token=api.alice)
    assert status == 202 and (out["action"], out["model_key"]) == ("suspended", key), out
    assert out["message"] == "suspend alice/sleepy: suspended false -> true" and out["commit"]
    assert api.git_log()[0] == "alice <alice@argus.local>|suspend alice/sleepy: suspended false -> true"
    # The same edit as `argusctl suspend`: one line added, the rest of the spec as it was.
    assert spec_in_repo(api, "models.d/alice/sleepy.yaml") == SPEC.format(name="sleepy") + "suspended: true\n"
    _, detail, _ = api.http("GET", f"{MODELS}/{key}", token=api.alice)
    assert detail["model"]["suspended"] is True and detail["model"]["commit_sha"] == out["commit"]
    assert "suspended: true" in detail["resolved_spec_yaml"]
    _, listed, _ = api.http("GET", MODELS, token=api.alice)
    assert [m["suspended"] for m in listed["items"] if m["model_key"] == key] == [True]

    status, again, _ = api.http("POST", f"{MODELS}/{key}/suspend", token=api.alice)
    assert status == 202 and (again["action"], again["commit"]) == ("unchanged", None), again
    assert again["message"] == "alice/sleepy is already suspended"

    status, out, _ = api.http("POST", f"{MODELS}/{key}/resume", token=api.alice)
    assert status == 202 and out["action"] == "resumed", out
    assert api.git_log()[0] == "alice <alice@argus.local>|resume alice/sleepy: suspended true -> false"
    assert spec_in_repo(api, "models.d/alice/sleepy.yaml") == SPEC.format(name="sleepy")
    _, detail, _ = api.http("GET", f"{MODELS}/{key}", token=api.alice)
    assert detail["model"]["suspended"] is False and "suspended" not in detail["resolved_spec_yaml"]
    status, again, _ = api.http("POST", f"{MODELS}/{key}/resume", token=api.alice)
    assert status == 202 and (again["action"], again["commit"], again["message"]) == (
        "unchanged", None, "alice/sleepy is not suspended"), again
    assert len(api.git_log()) == commits + 2


def test_suspend_and_resume_are_the_owners_alone_and_take_no_body(api):
    _, out, _ = create(api, api.alice, "guarded")
    key = out["model_key"]
    commits = len(api.git_log())
    for verb in ("suspend", "resume"):
        status, out, _ = api.http("POST", f"{MODELS}/{key}/{verb}", token=api.bob)
        assert status == 404 and key in out["message"], out    # another user's model does not exist for bob
        status, out, _ = api.http("POST", f"{MODELS}/{key}/{verb}", token=api.admin)
        assert status == 403 and "only its owner" in out["message"], out
        status, out, _ = api.http("POST", f"{MODELS}/{key}/{verb}")
        assert status == 401, out
        status, out, _ = api.http("POST", f"{MODELS}/nope/{verb}", token=api.alice)
        assert status == 404 and out["error"] == "not_found", out
        status, out, _ = api.http("POST", f"{MODELS}/{key}/{verb}", token=api.alice, body={"suspended": True})
        assert status == 422 and out["error"] == "invalid_request" and "no body" in out["message"], out
    assert len(api.git_log()) == commits


def test_delete_takes_no_body(api):
    _, out, _ = create(api, api.alice, "keepme")
    commits = len(api.git_log())
    status, out, _ = api.http("DELETE", f"{MODELS}/{out['model_key']}", token=api.alice, body={"force": True})
    assert status == 422 and "no body" in out["message"], out
    assert len(api.git_log()) == commits


def test_lint_route_reports_what_the_hook_would_refuse(api):
    status, out, _ = api.http("POST", "/api/v2/serve/lint", token=api.alice, body="model_id: a\nnum_replicas: 0\n",
                              ctype=YAML)
    assert status == 200 and {p["line"] for p in out["problems"]} >= {1, 2}
    status, out, _ = api.http("POST", "/api/v2/serve/lint", token=api.alice, body=SPEC.format(name="a"), ctype=YAML)
    assert out == {"problems": []}


def test_a_write_that_loses_to_a_concurrent_edit_is_a_conflict_and_pushes_nothing(tmp_path, monkeypatch):
    """Real git: alice's own clone pushes a different edit of the same spec between the API's
    read of the repo and its push; the API's write is refused (409), the repo keeps hers."""
    from daemon import gitwrite
    from daemon.api.service import ModelService
    from daemon.api.tokens import Identity
    from daemon.config import load_config

    daemon = ApiDaemon(tmp_path, {"alice": "alice@argus.local"})
    try:
        token = daemon.token("alice")
        _, out, _ = create(daemon, token, "race")
        key = out["model_key"]
        work = tmp_path / "work"
        subprocess.run(["git", "pull", "-q"], cwd=work, check=True)
        real_sync = gitwrite.reset_to_pushed

        def sync_then_someone_pushes(clone):
            real_sync(clone)
            (work / "models.d/alice/race.yaml").write_text(SPEC.format(name="race") + "num_replicas: 3\n")
            subprocess.run(["git", "commit", "-qam", "edit from her laptop"], cwd=work, check=True)
            subprocess.run(["git", "push", "-q", "origin", "HEAD:main"], cwd=work, check=True)

        monkeypatch.setattr(gitwrite, "reset_to_pushed", sync_then_someone_pushes)
        service = ModelService(load_config(daemon.config), tmp_path / "clones")
        with pytest.raises(ConflictError, match="changed the same spec meanwhile"):
            service.scale(Identity("alice", False, "alice", "alice@argus.local"), key, 2)
        assert daemon.git_log()[0].endswith("|edit from her laptop")
    finally:
        daemon.stop()


def test_a_user_removed_from_users_is_refused_by_the_api_as_by_the_hook_and_argusd(tmp_path):
    """A token outlives its user's removal from users:. The API's writes ask the judge with the
    config's users: as argusd and the hook do, so the write is refused before anything is pushed
    (it was accepted, then refused by the hook or argusd)."""
    from daemon.api.service import ModelService
    from daemon.api.tokens import Identity
    from daemon.config import load_config
    from daemon.errors import SpecError

    daemon = ApiDaemon(tmp_path, {"alice": "alice@argus.local", "bob": "bob@argus.local"})
    try:
        token = daemon.token("bob")
        _, out, _ = create(daemon, token, "kept")
        key = out["model_key"]
        config = load_config(daemon.config)
        config.users.pop("bob")                       # the operator removed bob; his token still works
        service = ModelService(config, tmp_path / "clones")
        bob = Identity("bob", False, "bob", "bob@argus.local")
        commits = len(daemon.git_log())
        unknown = "user 'bob' is not known to this platform"
        with pytest.raises(SpecError, match=unknown):
            service.create(bob, SPEC.format(name="new").encode())
        with pytest.raises(SpecError, match=unknown):
            service.scale(bob, key, 2)
        assert [p["message"] for p in service.lint(bob, SPEC.format(name="new").encode())][0].startswith(unknown)
        assert len(daemon.git_log()) == commits
        alice = Identity("alice", False, "alice", "alice@argus.local")
        assert service.lint(alice, SPEC.format(name="new").encode()) == []
    finally:
        daemon.stop()


def test_the_api_failing_to_start_never_stops_sync(tmp_path):
    import socket
    import time

    daemon = ApiDaemon(tmp_path)
    daemon.stop()
    with socket.socket() as busy:  # the API's port is taken now
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        daemon.config.write_text(daemon.config.read_text().replace(f"127.0.0.1:{daemon.port}", f"127.0.0.1:{port}"))
        log_path = tmp_path / "again.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "daemon.argusd", "--sync-only", "--config",
                                     str(daemon.config)], stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 20
                while "argusd started" not in log_path.read_text() and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert re.search(rf"cannot serve the API on 127\.0\.0\.1:{port} .*going on without it",
                                 log_path.read_text()), log_path.read_text()
                spec = tmp_path / "later.yaml"
                spec.write_text(SPEC.format(name="later"))
                assert run_argusctl("apply", "-f", str(spec), "--workdir", str(tmp_path / "work"),
                                    env=daemon.env).returncode == 0
                while "CreateModel models.d/alice/later.yaml" not in log_path.read_text():
                    assert time.monotonic() < deadline + 20, log_path.read_text()
                    time.sleep(0.05)
                assert proc.poll() is None  # argusd records commits all the same
            finally:
                proc.terminate()
                proc.wait(timeout=15)


def adapter_folder(api, user: str, name: str, rank: int = 8) -> None:
    folder = api.tmp / "private" / "users" / user / "adapters" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank}))


def test_adapters_name_their_base_and_load_state_and_a_base_lists_its_adapters(api):
    """Issue 26.6: an adapter has no replicas of its own (null, not 0) and says which base it is
    on and where it is (argusd --sync-only here: it waits for its base); the base lists every
    adapter on it, another user's by id, owner and load state only."""
    status, base, _ = create(api, api.alice, "lorabase")
    assert status == 202, base
    status, out, _ = create(api, api.alice, "lorabase",
                            body=SPEC.format(name="lorabase") + "adapters:\n  max_rank: 8\n  users: [bob]\n")
    assert status == 202 and out["action"] != "unchanged", out
    adapter_folder(api, "alice", "loramine")
    adapter_folder(api, "bob", "loratheirs")
    status, mine, _ = create(api, api.alice, "loramine", body="model_id: loramine\nbase_model: lorabase\n"
                                                             "model_source: $HOME/adapters/loramine\n")
    assert status == 202, mine
    status, theirs, _ = create(api, api.bob, "loratheirs", body=f"model_id: loratheirs\nbase_model: {base['model_id']}\n"
                                                                "model_source: $HOME/adapters/loratheirs\n")
    assert status == 202, theirs

    status, listed, _ = api.http("GET", MODELS, token=api.bob)
    row = next(m for m in listed["items"] if m["model_key"] == theirs["model_key"])
    assert row["kind"] == "adapter" and row["num_replicas"] is None and row["gpus_per_replica"] is None
    assert row["adapter_load"] == "waiting for base"
    # bob may not open alice's base: its id, no key to link by.
    assert row["base_model"] == {"ref": base["model_id"], "model_id": base["model_id"], "model_key": None,
                                 "state": "QUEUED"}

    status, detail, _ = api.http("GET", f"{MODELS}/{base['model_key']}", token=api.alice)
    m = detail["model"]
    assert m["kind"] == "model" and m["takes_adapters"] == {"max_rank": 8, "max_loaded": 4, "users": ["bob"]}
    assert [(a["model_id"], a["user_id"], a["adapter_load"], a["model_key"]) for a in m["adapters"]] == [
        (mine["model_id"], "alice", "waiting for base", mine["model_key"]),
        (theirs["model_id"], "bob", "waiting for base", None)]
    # Opting in reads as a sentence, not a Python dict.
    text = next(e["text"] for e in detail["events"] if e["event_type"] == "UPDATED")
    assert text.startswith("generation 2: adapters set: max_loaded 4, max_rank 8, users bob by alice"), text
    assert not re.search(r"None|[{}\[\]']", text), text

    status, detail, _ = api.http("GET", f"{MODELS}/{mine['model_key']}", token=api.alice)
    assert detail["model"]["base_model"]["model_key"] == base["model_key"]
    assert detail["model"]["adapter_load"] == "waiting for base"
    created = next(e["text"] for e in detail["events"] if e["event_type"] == "CREATED")
    assert "replica" not in created, created  # no "0 replicas x 0 GPU" for an adapter


def test_an_unknown_page_is_a_page_and_an_unknown_api_route_is_json(api):
    for path in ("/ui/nope", "/ui/serving/new/extra", "/favicon.ico"):
        status, page, headers = api.http("GET", path)
        assert status == 404 and headers["content-type"].startswith("text/html"), path
        assert 'data-page="notfound"' in page and 'href="/ui/serving"' in page and '"detail"' not in page
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    status, out, _ = api.http("GET", "/api/v2/nope", token=api.alice)
    assert status == 404 and out["error"] == "not_found" and "/api/v2/nope" in out["message"]
    status, out, _ = api.http("PUT", MODELS, token=api.alice)
    assert status == 405 and out["error"] == "method_not_allowed"
