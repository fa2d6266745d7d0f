"""The web UI in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium) against a real argusd (--sync-only) and a real GitOps repo. A researcher signs
in with a token, creates a model from YAML (checked as they type), sees it in the list, opens
its detail with events, scales it and deletes it; every step is a commit by them.

Set ARGUS_UI_SCREENSHOTS=docs/ui to refresh the screenshots the docs show."""
import os
import shutil
import time
from pathlib import Path

import pytest

from helpers import ApiDaemon

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    # The e2e run (CI) installs them (scripts/setup_browser.sh) and must not skip.
    if os.environ.get("ARGUS_E2E"):
        pytest.fail("chromium and chromedriver are missing: run scripts/setup_browser.sh", pytrace=False)
    pytest.skip("needs Debian's chromium and chromium-driver (scripts/setup_browser.sh)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
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
        row.find_element(By.CSS_SELECTOR, "[data-action=delete]").click()
        wait.until(EC.alert_is_present()).accept()
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, f'tr[data-model="{model_id}"]')
                   or d.find_element(By.CSS_SELECTOR, f'tr[data-model="{model_id}"] .badge').text in ("DELETING", "DELETED"))

        assert [line.split("|")[1] for line in api.git_log()[:3]] == [
            "delete alice/chat", "scale alice/chat: num_replicas 1 -> 2", "apply alice/chat: new model"]
        assert {line.split("|")[0] for line in api.git_log()[:3]} == {"alice <alice@argus.local>"}
    finally:
        api.stop()
