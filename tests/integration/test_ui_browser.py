"""The web UI in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium) against a real argusd (--sync-only) and a real GitOps repo. A researcher signs
in with a token, creates a model from YAML (checked as they type), sees it in the list, opens
its detail with events, scales it and deletes it; every step is a commit by them.

Set ARGUS_UI_SCREENSHOTS=docs/ui to refresh the screenshots the docs show."""
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import ApiDaemon
from ray_metrics_stub import RayMetricsStub

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    # The e2e run (CI) installs them (scripts/setup_browser.sh) and must not skip.
    if os.environ.get("ARGUS_E2E"):
        pytest.fail("chromium and chromedriver are missing: run scripts/setup_browser.sh", pytrace=False)
    pytest.skip("needs Debian's chromium and chromium-driver (scripts/setup_browser.sh)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SPEC = "model_id: chat\nmodel_source: $HOME/common/hf/m\nnum_replicas: 1\n"


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1366,900", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER, log_output=str(tmp_path / "chromedriver.log")), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def shot(driver, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("ARGUS_UI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    time.sleep(0.3)  # let the last poll paint
    driver.save_screenshot(str(folder / f"{name}.png"))


def test_a_researcher_does_everything_from_the_browser(tmp_path, browser):
    api = ApiDaemon(tmp_path / "argus", {"alice": "alice@argus.local"})
    try:
        token = api.token("alice")
        base = f"http://127.0.0.1:{api.port}"
        wait = WebDriverWait(browser, 20)

        # Sign in: the list page sends us to the login page and back.
        browser.get(f"{base}/ui/serving")
        wait.until(EC.url_contains("/ui/login"))
        wait.until(EC.presence_of_element_located((By.ID, "token"))).send_keys("argus_wrong")
        browser.find_element(By.ID, "sign-in").click()
        wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice.error"), "unknown or revoked"))
        shot(browser, "login", tmp_path)
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.ID, "sign-in").click()
        wait.until(EC.url_to_be(f"{base}/ui/serving"))
        wait.until(EC.text_to_be_present_in_element((By.ID, "models"), "No models yet"))
        cookie = browser.get_cookie("argus_session")
        assert cookie and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        assert browser.execute_script("return document.cookie") == ""  # scripts cannot read the session
        shot(browser, "empty", tmp_path)

        # Create from YAML: a mistake is shown at its line as we type, and blocks the submit.
        browser.find_element(By.ID, "new-model").click()
        editor = wait.until(EC.presence_of_element_located((By.ID, "spec")))
        wait.until(EC.presence_of_element_located((By.ID, "lint-ok")))  # the example is valid
        editor.clear()
        editor.send_keys(SPEC.replace("num_replicas: 1", "num_replicas: 0"))
        wait.until(EC.text_to_be_present_in_element((By.ID, "problems"), "3:15"))
        assert not browser.find_element(By.ID, "submit").is_enabled()
        shot(browser, "new-invalid", tmp_path)
        editor.clear()
        editor.send_keys(SPEC)
        wait.until(EC.presence_of_element_located((By.ID, "lint-ok")))
        shot(browser, "new", tmp_path)
        wait.until(EC.element_to_be_clickable((By.ID, "submit"))).click()

        # The detail page: the model, its events, how to call it.
        wait.until(EC.url_contains("/ui/serving/m-"))
        wait.until(EC.text_to_be_present_in_element((By.ID, "model-id"), "alice-"))
        model_id = browser.find_element(By.ID, "model-id").text.split()[0]
        assert model_id.endswith("-chat")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-event]"))
        assert f'"model": "{model_id}"' in browser.find_element(By.ID, "example").text
        assert "http://127.0.0.1:8000/v1/chat/completions" in browser.find_element(By.ID, "example").text
        assert "num_replicas: 1" in browser.find_element(By.ID, "resolved-spec").text
        wait.until(EC.text_to_be_present_in_element(
            (By.ID, "traffic-problem"), "No traffic chart: argusd does not read Ray's metrics (it runs --sync-only)"))
        shot(browser, "detail", tmp_path)

        # Scale from the detail page: the page updates without a reload.
        browser.execute_script("window.__same_page = true")
        replicas = browser.find_element(By.CSS_SELECTOR, "[data-action=replicas]")
        replicas.clear()
        replicas.send_keys("2")
        browser.find_element(By.CSS_SELECTOR, "[data-action=scale]").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "resolved-spec"), "num_replicas: 2"))
        wait.until(lambda d: any("num_replicas 1 -> 2" in e.text for e in d.find_elements(By.CSS_SELECTOR, "tr[data-event]")))
        assert browser.execute_script("return window.__same_page") is True

        # The list shows it, with its state.
        browser.get(f"{base}/ui/serving")
        row = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-model="{model_id}"]')))
        assert row.find_element(By.CSS_SELECTOR, ".badge").text == "QUEUED"  # --sync-only: nothing deploys
        shot(browser, "list", tmp_path)

        # Delete from the list (after a confirmation): its state changes in place.
        WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: d.find_element(By.CSS_SELECTOR, f'tr[data-model="{model_id}"] [data-action=delete]').click()
            or True)
        wait.until(EC.alert_is_present()).accept()
        # One look at the page per poll: the list re-renders the row in place, so a row found by
        # one query can be gone by the next (a StaleElementReferenceException in CI).
        wait.until(lambda d: d.execute_script(
            "const badge = document.querySelector(arguments[0]);"
            "return !badge || ['DELETING', 'DELETED'].includes(badge.textContent.trim());",
            f'tr[data-model="{model_id}"] .badge'))

        assert [line.split("|")[1] for line in api.git_log()[:3]] == [
            "delete alice/chat", "scale alice/chat: num_replicas 1 -> 2", "apply alice/chat: new model"]
        assert {line.split("|")[0] for line in api.git_log()[:3]} == {"alice <alice@argus.local>"}
    finally:
        api.stop()


def test_suspend_from_the_model_page_and_resume_from_the_list(tmp_path, browser):
    """Issue 24.3 in the browser: Suspend on the model page (after a confirmation) and Resume in
    the list, each a commit by the user; the page and the list say who suspended the model in
    which commit, and the button turns into the other one without a reload. (The SUSPENDED
    state itself is argusd's to set: --sync-only leaves the model QUEUED.)"""
    api = ApiDaemon(tmp_path / "argus", {"alice": "alice@argus.local"})
    try:
        token = api.token("alice")
        base = f"http://127.0.0.1:{api.port}"
        wait = WebDriverWait(browser, 20)
        status, made, _ = api.http("POST", "/api/v2/serve/models", token=token, body=SPEC, ctype="application/yaml")
        assert status == 202, made
        browser.get(f"{base}/ui/login")
        wait.until(EC.presence_of_element_located((By.ID, "token"))).send_keys(token)
        browser.find_element(By.ID, "sign-in").click()
        wait.until(EC.url_to_be(f"{base}/ui/serving"))

        browser.get(f"{base}/ui/serving/{made['model_key']}")
        browser.execute_script("window.__same_page = true")
        button = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "[data-action=suspend]")))
        assert button.text == "Suspend" and not browser.find_elements(By.ID, "suspended")
        button.click()
        wait.until(EC.alert_is_present()).dismiss()         # cancelled: nothing happens
        time.sleep(0.5)
        assert api.git_log()[0].split("|")[1] == "apply alice/chat: new model"
        button.click()
        wait.until(EC.alert_is_present()).accept()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "[data-action=resume]")))
        assert api.git_log()[0] == "alice <alice@argus.local>|suspend alice/chat: suspended false -> true"
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=api.tmp / "gitops.git", capture_output=True, text=True,
                             check=True).stdout.strip()
        wait.until(EC.text_to_be_present_in_element(
            (By.ID, "suspended"), f"Suspended by alice <alice@argus.local> in {sha[:12]}: no replica runs"))
        wait.until(EC.text_to_be_present_in_element((By.ID, "resolved-spec"), "suspended: true"))
        assert browser.find_element(By.CSS_SELECTOR, "[data-action=resume]").text == "Resume"
        assert browser.execute_script("return window.__same_page") is True
        shot(browser, "suspended", tmp_path)

        browser.get(f"{base}/ui/serving")
        row = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-model="{made["model_id"]}"]')))
        assert row.find_element(By.CSS_SELECTOR, "[data-suspended]").text == f"suspended by alice <alice@argus.local> in {sha[:12]}"
        row.find_element(By.CSS_SELECTOR, "[data-action=resume]").click()   # no confirmation: nothing is lost
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-model="{made["model_id"]}"] [data-action=suspend]'))
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-suspended]")
        assert [line.split("|")[1] for line in api.git_log()[:2]] == [
            "resume alice/chat: suspended true -> false", "suspend alice/chat: suspended false -> true"]
    finally:
        api.stop()


def record(db: Path, model_key: str, state: str, event_type: str, payload: dict, *, error_summary=None,
           applied_generation=None) -> None:
    """Write one transition as the reconciler's _record writes it (state, applied generation,
    event). argusd runs --sync-only here, so nothing else moves a model past QUEUED; the
    transitions themselves are the plan's (tests/unit/test_adapters.py, the e2e adapter run)."""
    from daemon.store import Store, iso
    from datetime import datetime, timezone

    store = Store.open(db)
    try:
        with store.transaction():
            now = iso(datetime.now(timezone.utc))
            store.set_state(model_key, state, error_summary=error_summary, now=now)
            if applied_generation is not None:
                store.mark_applied(model_key, applied_generation)
            store.append_event(event_type, payload, now=now, model_key=model_key)
    finally:
        store.close()


def test_adapters_show_their_base_and_load_state_and_a_base_lists_them(tmp_path, browser):
    """Issue 26.6 in the browser: an adapter shows its base and its load state and has no scale
    control; its base lists its adapters (another user's without a link); the events read as
    sentences; an unknown page is a page with a way back."""
    api = ApiDaemon(tmp_path / "argus", {"alice": "alice@argus.local", "bob": "bob@argus.local"})
    try:
        alice, bob = api.token("alice"), api.token("bob")
        base_url = f"http://127.0.0.1:{api.port}"
        wait = WebDriverWait(browser, 20)
        for user, name, rank in (("alice", "tone", 8), ("alice", "big", 16), ("bob", "pirate", 8)):
            folder = api.tmp / "private" / "users" / user / "adapters" / name
            folder.mkdir(parents=True)
            (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank}))

        def post(token, body):
            status, out, _ = api.http("POST", "/api/v2/serve/models", token=token, body=body, ctype="application/yaml")
            assert status == 202, out
            return out

        base = post(alice, SPEC)
        base = post(alice, SPEC + "adapters:\n  max_rank: 8\n  users: [bob]\n")  # opted in: an UPDATED event
        tone = post(alice, "model_id: tone\nbase_model: chat\nmodel_source: $HOME/adapters/tone\n")
        big = post(alice, "model_id: big\nbase_model: chat\nmodel_source: $HOME/adapters/big\n")
        pirate = post(bob, f"model_id: pirate\nbase_model: {base['model_id']}\nmodel_source: $HOME/adapters/pirate\n")
        # What the reconciler records with the base running (see `record`).
        db = api.tmp / "state" / "argus.db"
        record(db, base["model_key"], "DEPLOYING", "APPLIED", {"generation": 2, "num_replicas": 1})
        record(db, base["model_key"], "RUNNING", "RUNNING", {"generation": 2}, applied_generation=2)
        on_base = {"generation": 1, "base_model": base["model_id"]}
        record(db, tone["model_key"], "DEPLOYING", "APPLIED", on_base)
        record(db, tone["model_key"], "RUNNING", "RUNNING", on_base, applied_generation=1)
        too_big = (f"the adapter's rank is 16 (r in adapter_config.json), over base model {base['model_id']}'s "
                   "adapters.max_rank 8; train with r <= 8 or raise max_rank")
        record(db, big["model_key"], "QUEUED", "WAITING_FOR_BASE", {"message": too_big}, error_summary=too_big)
        record(db, pirate["model_key"], "DEPLOYING", "APPLIED", on_base)

        browser.get(f"{base_url}/ui/login")
        wait.until(EC.presence_of_element_located((By.ID, "token"))).send_keys(alice)
        browser.find_element(By.ID, "sign-in").click()
        wait.until(EC.url_to_be(f"{base_url}/ui/serving"))

        # The list: adapters name their base and load state, and have no scale control.
        row = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-model="{tone["model_id"]}"]')))
        assert row.find_element(By.CSS_SELECTOR, "[data-base]").text == f"LoRA adapter on {base['model_id']}"
        assert row.find_element(By.CSS_SELECTOR, "[data-load]").text == "loaded"
        assert not row.find_elements(By.CSS_SELECTOR, "[data-action=scale], [data-action=replicas], [data-action=suspend]")
        assert row.find_elements(By.CSS_SELECTOR, "[data-action=delete]")
        waiting = browser.find_element(By.CSS_SELECTOR, f'tr[data-model="{big["model_id"]}"]')
        assert waiting.find_element(By.CSS_SELECTOR, "[data-load]").text == "waiting for base"
        assert "rank is 16" in waiting.find_element(By.CSS_SELECTOR, ".reason").text
        base_row = browser.find_element(By.CSS_SELECTOR, f'tr[data-model="{base["model_id"]}"]')
        assert base_row.find_element(By.CSS_SELECTOR, "[data-adapters]").text == "takes LoRA adapters · 3 attached"
        assert base_row.find_elements(By.CSS_SELECTOR, "[data-action=scale]")  # a base scales as before
        assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-model="{pirate["model_id"]}"]')  # bob's
        # Each adapter right under its base.
        assert [r.get_attribute("data-model") for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-model]")] == [
            base["model_id"], big["model_id"], tone["model_id"]]
        shot(browser, "adapters-list", tmp_path)

        # The adapter's page: its base (a link), its load state, no scale control.
        row.find_element(By.CSS_SELECTOR, "a").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "model-id"), "loaded"))
        facts = browser.find_element(By.ID, "facts").text
        assert f"Base model\n{base['model_id']}" in facts and "Replicas" not in facts
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-action=scale], [data-action=suspend]")
        wait.until(lambda d: any(f"generation 1 loaded on base model {base['model_id']}" in e.text
                                 for e in d.find_elements(By.CSS_SELECTOR, "tr[data-event]")))
        assert "not deployed in Serve" not in browser.find_element(By.ID, "serve-status").text
        assert f'"model": "{tone["model_id"]}"' in browser.find_element(By.ID, "example").text
        shot(browser, "adapter", tmp_path)

        # Its base's page lists its adapters; bob's is shown by id and owner, without a link.
        browser.find_element(By.CSS_SELECTOR, "#facts [data-base-link]").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#adapters tr[data-adapter]")))
        listed = {r.get_attribute("data-adapter"): r for r in browser.find_elements(By.CSS_SELECTOR, "#adapters tr[data-adapter]")}
        assert set(listed) == {tone["model_id"], big["model_id"], pirate["model_id"]}
        assert listed[tone["model_id"]].find_element(By.CSS_SELECTOR, "[data-load]").text == "loaded"
        assert listed[pirate["model_id"]].find_element(By.CSS_SELECTOR, "[data-load]").text == "loading"
        assert not listed[pirate["model_id"]].find_elements(By.CSS_SELECTOR, "a")
        assert listed[tone["model_id"]].find_elements(By.CSS_SELECTOR, "a")
        events = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "tr[data-event]")]
        opted = next(t for t in events if "UPDATED" in t)
        assert "adapters set: max_loaded 4, max_rank 8, users bob by alice" in opted, opted
        assert not any(re.search(r"None|[{}\[\]']", t) for t in events), events
        browser.execute_script("document.getElementById('adapters-panel').scrollIntoView()")
        shot(browser, "base-adapters", tmp_path)

        # A page that does not exist is a page (404), with the way back.
        for missing in ("/ui/serving/m-0000000000000000", "/ui/nope"):
            browser.get(base_url + missing)
            back = wait.until(EC.element_to_be_clickable((By.ID, "back")))
            assert "Not found" in browser.find_element(By.ID, "not-found").text
            assert "detail" not in browser.page_source.lower().split("<main")[1]
        shot(browser, "not-found", tmp_path)
        back.click()
        wait.until(EC.url_to_be(f"{base_url}/ui/serving"))
    finally:
        api.stop()


def test_the_model_page_charts_its_requests_failures_and_latency(tmp_path, browser):
    """Issue 26.9 in the browser: argusd (not --sync-only) reads the model's counts from a Ray
    node's metrics export each tick (Ray Serve's own text, captured from a real Ray: see
    tests/ray_metrics_stub.py) and the model page draws them; when the metrics cannot be read
    the panel says so in one line and the rest of the page goes on."""
    with RayMetricsStub() as ray:
        api = ApiDaemon(tmp_path / "argus", {"alice": "alice@argus.local"}, dashboard_url=ray.url, poll_seconds=1,
                          traffic_seconds=1)
        try:
            token = api.token("alice")
            status, model, _ = api.http("POST", "/api/v2/serve/models", token=token, body=SPEC, ctype="application/yaml")
            assert status == 202, model
            ray.model_key = model["model_key"]
            base_url = f"http://127.0.0.1:{api.port}"
            wait = WebDriverWait(browser, 30)
            browser.get(f"{base_url}/ui/login?next=/ui/serving/{model['model_key']}")
            wait.until(EC.presence_of_element_located((By.ID, "token"))).send_keys(token)
            browser.find_element(By.ID, "sign-in").click()
            wait.until(EC.url_contains(f"/ui/serving/{model['model_key']}"))

            # The stub's traffic (tests/ray_metrics_stub.py: traffic_at), a point a second, as the
            # page draws and sums it: 25 points take in the burst of failures at scrapes 10 and 11.
            # The page draws the panel anew each second: every read below is one script run in the
            # page (an element found, then read in a second call, may be gone by then: stale).
            def drawn(d):
                points = d.execute_script("const l = document.querySelector('#chart-requests polyline.requests');"
                                          "return l ? l.getAttribute('points') : null")
                return points is not None and len(points.split()) >= 25
            WebDriverWait(browser, 90, ignored_exceptions=(StaleElementReferenceException,)).until(drawn)
            panel = browser.execute_script("""
                const text = (css) => { const e = document.querySelector(css); return e ? e.innerText : null; };
                const svg = (id) => { const e = document.getElementById(id); const r = e.getBoundingClientRect();
                                      return [e.tagName.toLowerCase(), r.height, e.checkVisibility()]; };
                return {summary: text('#traffic-summary'), traffic: text('#traffic'),
                        problem: document.getElementById('traffic-problem') !== null,
                        charts: [svg('chart-requests'), svg('chart-latency')],
                        failures: document.querySelector('#chart-requests polyline.failures').getAttribute('points'),
                        failed: text('#traffic .failed')};""")
            found = re.search(r"(\d+) requests, (\d+) failed, mean latency (\d+) ms", panel["summary"])
            assert found and int(found[1]) >= 24 * 4 and int(found[2]) >= 4, panel["traffic"]
            assert 180 <= int(found[3]) <= 405, found[0]  # traffic_at's latencies: 180..405 ms
            assert not panel["problem"]
            assert [line for line in panel["traffic"].splitlines() if line.strip()][1].startswith(found[0]), panel
            for tag, height, visible in panel["charts"]:
                assert tag == "svg" and visible and height > 60, panel["charts"]
            assert len({xy.split(",")[1] for xy in panel["failures"].split()}) >= 2  # flat at 0 but for the burst
            assert panel["failed"].endswith("failed")
            # The API says the same (the page only draws it).
            status, traffic, _ = api.http("GET", f"/api/v2/serve/models/{model['model_key']}/traffic", token=token)
            assert status == 200 and traffic["available"] is True and traffic["problem"] is None, traffic
            assert traffic["interval_seconds"] == 1 and traffic["window_seconds"] == 1800
            assert sum(p["failures_per_s"] * p["seconds"] for p in traffic["points"]) >= 2
            browser.execute_script("document.getElementById('traffic').scrollIntoView({block: 'center'})")
            shot(browser, "traffic", tmp_path)

            # Ray's metrics go away: one line says so, the chart keeps what it had, the page goes on.
            ray.down = True
            wait.until(EC.text_to_be_present_in_element((By.ID, "traffic-problem"),
                                                        f"Ray's metrics cannot be read now: cannot reach the Ray dashboard at {ray.url}"))
            assert browser.execute_script("return document.getElementById('chart-requests').checkVisibility()")
            assert "alice-" in browser.find_element(By.ID, "model-id").text
            assert "num_replicas: 1" in browser.find_element(By.ID, "resolved-spec").text
        finally:
            api.stop()
