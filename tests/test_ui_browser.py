"""/ui in a real browser: Selenium and Debian's chromium-driver against a live gunicorn.

People sign in, decide approvals with and without JavaScript, and every page passes
axe-core (vendored in tests/assets, injected into the page) with no critical or serious
violation. ORCHESTRATOR_UI_SCREENSHOTS=<dir> also saves the README's screenshots there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests

from tests.conftest import API_KEYS, HEADERS, PRINCIPALS
from tests.helpers import CHROMIUM_FLAGS, chromium

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow

AXE = Path(__file__).with_name("assets") / "axe.min.js"
GATED = {"type": "deploy", "priority": "P1", "payload": {"environment": "production", "v": 7}}
os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach the internet


def chrome(javascript: bool = True):
    """Headless Debian chromium through chromium-driver; fails (never skips) without them."""
    options = webdriver.ChromeOptions()
    options.binary_location = chromium()
    driver_path = shutil.which("chromedriver")
    if not driver_path:
        pytest.fail("chromium-driver is not installed: apt-get install -y chromium-driver")
    for flag in (*CHROMIUM_FLAGS, "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module")
def server(module_live_server):
    return module_live_server(workers=2)


@pytest.fixture(scope="module")
def browser():
    driver = chrome()
    yield driver
    driver.quit()


@pytest.fixture
def own_browser(live_server):
    """A browser of the test's own, closed before the test's live_server stops: an idle
    connection Chrome keeps open would hold a sync worker, and the stop, for 15 s."""
    driver = chrome()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def browser_without_js():
    driver = chrome(javascript=False)
    yield driver
    driver.quit()


def create(server, body=GATED, as_="agent") -> dict:
    """A task created through the API, as `as_`."""
    response = requests.post(f"{server.url}/tasks", json=body, headers=HEADERS[as_], timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["task"]


def failed_task(server) -> dict:
    """A plain task its agent reported failed."""
    task = create(server, {"type": "bugfix", "priority": "P3"})
    response = requests.patch(
        f"{server.url}/tasks/{task['task_id']}/status",
        json={"status": "failed", "error": "boom"},
        headers=HEADERS["agent"],
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["task"]


def subscription_with_a_delivery(server) -> dict:
    """A webhook (no deliverer runs here, so its test delivery stays pending)."""
    hook = {"url": "https://hooks.example.com/in", "events": ["task.*"], "description": "ops"}
    created = requests.post(
        f"{server.url}/webhooks", json=hook, headers=HEADERS["admin"], timeout=10
    )
    assert created.status_code == 201, created.text
    path = f"{server.url}/webhooks/{created.json()['webhook_id']}/test"
    assert requests.post(path, headers=HEADERS["admin"], timeout=10).status_code == 202
    return created.json()


def api_task(server, task_id: str) -> dict:
    """A task as the API shows it."""
    response = requests.get(f"{server.url}/tasks/{task_id}", headers=HEADERS["user"], timeout=10)
    return response.json()["task"]


def sign_in(driver, server, role: str) -> None:
    """Sign in through the form, as a person would."""
    driver.delete_all_cookies()
    driver.get(f"{server.url}/ui/login")
    driver.find_element(By.ID, "api_key").send_keys(API_KEYS[role])
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, lambda d: d.current_url.rstrip("/").endswith("/ui"))


def wait_for(driver, condition, timeout: float = 30):
    try:
        # htmx swaps polled elements out (outerHTML): one read between a find and its .text
        # may meet the old element, which is a reason to look again, not a failure.
        return WebDriverWait(
            driver, timeout, ignored_exceptions=(StaleElementReferenceException,)
        ).until(condition)
    except TimeoutException:
        pytest.fail(f"timed out on {driver.current_url}: {driver.page_source[:3000]}")


def card(driver, approval_id: str):
    """The inbox card of one approval."""
    return driver.find_element(By.XPATH, f"//article[@aria-labelledby='title-{approval_id}']")


def decide(driver, approval_id: str, verb: str, text: str) -> None:
    """Fill and send the approve (comment) or reject (reason) form of one card."""
    form = driver.find_element(By.ID, f"{verb}-{approval_id}")
    name = "comment" if verb == "approve" else "reason"
    form.find_element(By.NAME, name).send_keys(text)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(driver, lambda d: "/ui/tasks/" in d.current_url)


def axe_violations(driver) -> list[str]:
    """Critical and serious axe-core violations of the page now shown."""
    driver.execute_script(AXE.read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        "  .then(done, e => done({error: String(e)}));"
    )
    assert "error" not in result, result
    assert len(result["passes"]) >= 10, "axe checked almost nothing"
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("critical", "serious")
    ]


def test_the_creator_sees_you_requested_this_and_no_approve_button(browser, server):
    task = create(server)
    sign_in(browser, server, "agent")
    mine = card(browser, task["approval_id"])
    assert "you requested this" in mine.text.lower()
    assert not mine.find_elements(By.ID, f"approve-{task['approval_id']}")
    assert mine.find_elements(By.ID, f"reject-{task['approval_id']}")  # withdraw


def test_a_second_principal_approves_with_a_comment(browser, server):
    task = create(server)
    sign_in(browser, server, "ops")
    assert "you requested this" not in card(browser, task["approval_id"]).text.lower()
    decide(browser, task["approval_id"], "approve", "looks safe, ship it")
    assert browser.find_element(By.ID, "task-status").text == "assigned"
    timeline = browser.find_element(By.ID, "timeline").text
    assert "approval.approved" in timeline and "task.assigned" in timeline
    assert "looks safe, ship it" in browser.find_element(By.ID, "task-fields").text
    assert api_task(server, task["task_id"])["status"] == "assigned"


def test_a_second_principal_rejects_with_a_reason(browser, server):
    task = create(server)
    sign_in(browser, server, "ops")
    decide(browser, task["approval_id"], "reject", "wrong window")
    assert browser.find_element(By.ID, "task-status").text == "cancelled"
    assert "approval.rejected" in browser.find_element(By.ID, "timeline").text
    assert "wrong window" in api_task(server, task["task_id"])["error"]


def test_the_timeline_refreshes_by_itself(browser, server):
    task = create(server)
    sign_in(browser, server, "user")
    browser.get(f"{server.url}/ui/tasks/{task['task_id']}")
    assert "js" in browser.find_element(By.TAG_NAME, "html").get_attribute("class").split()
    assert "approval.approved" not in browser.find_element(By.ID, "timeline").text
    approve = f"{server.url}/approvals/{task['approval_id']}/approve"
    assert requests.post(approve, headers=HEADERS["ops"], timeout=10).status_code == 200
    wait_for(browser, lambda d: "approval.approved" in d.find_element(By.ID, "timeline").text)


def test_the_inbox_refreshes_and_keeps_what_was_typed(browser, server):
    first = create(server)
    sign_in(browser, server, "ops")
    comment = browser.find_element(By.ID, f"comment-{first['approval_id']}")
    comment.send_keys("half-written thought")
    later = create(server)
    wait_for(browser, lambda d: d.find_elements(By.ID, f"title-{later['approval_id']}"))
    kept = browser.find_element(By.ID, f"comment-{first['approval_id']}")
    assert kept.get_attribute("value") == "half-written thought"


def test_a_viewer_sees_no_buttons(browser, server):
    task = create(server)
    sign_in(browser, server, "user")
    assert task["task_id"] in browser.find_element(By.ID, "inbox-list").text
    assert browser.find_elements(By.CSS_SELECTOR, "main button, main form") == []
    browser.get(f"{server.url}/ui/tasks/{task['task_id']}")
    assert browser.find_elements(By.CSS_SELECTOR, "main button, main form") == []


def test_a_forged_post_without_the_csrf_token_is_refused(browser, server):
    task = create(server)
    sign_in(browser, server, "ops")
    # What another page could make this browser send: the same form, minus the token.
    browser.execute_script(
        "const form = document.getElementById(arguments[0]);"
        "form.querySelector('[name=csrf_token]').remove(); form.submit();",
        f"approve-{task['approval_id']}",
    )
    wait_for(browser, lambda d: "403" in d.title)
    assert api_task(server, task["task_id"])["status"] == "awaiting_approval"


def test_approve_and_reject_work_without_javascript(browser_without_js, server):
    driver = browser_without_js
    approved, rejected = create(server), create(server)
    sign_in(driver, server, "ops")
    assert "js" not in driver.find_element(By.TAG_NAME, "html").get_attribute("class")
    decide(driver, approved["approval_id"], "approve", "no-JS approval")
    assert driver.find_element(By.ID, "task-status").text == "assigned"
    driver.get(f"{server.url}/ui/")
    decide(driver, rejected["approval_id"], "reject", "no-JS rejection")
    assert driver.find_element(By.ID, "task-status").text == "cancelled"
    assert api_task(server, approved["task_id"])["status"] == "assigned"
    assert api_task(server, rejected["task_id"])["status"] == "cancelled"


def test_an_admin_retries_a_failed_task_with_the_button(browser, server):
    task = failed_task(server)
    page = f"{server.url}/ui/tasks/{task['task_id']}"
    sign_in(browser, server, "ops")
    browser.get(page)
    assert browser.find_element(By.ID, "task-status").text == "failed"
    assert browser.find_elements(By.ID, "retry-form") == []  # an agent may not retry
    sign_in(browser, server, "admin")
    browser.get(page)
    browser.find_element(By.CSS_SELECTOR, "#retry-form button[type=submit]").click()
    wait_for(browser, lambda d: "notice=retried" in d.current_url)
    assert browser.find_element(By.ID, "task-status").text == "assigned"
    assert "back in its agent's queue" in browser.find_element(By.CSS_SELECTOR, ".notice").text
    assert browser.find_elements(By.ID, "retry-form") == []
    assert "task.retried" in browser.find_element(By.ID, "timeline").text
    retried = api_task(server, task["task_id"])
    assert (retried["status"], retried["retry_count"]) == ("assigned", 0)


PAGES = ["/ui/", "/ui/approvals/history", "/ui/tasks", "/ui/queues", "/ui/webhooks"]


def test_every_page_passes_axe_at_both_widths(browser, server):
    gated, failed = create(server), failed_task(server)
    create(server, {"type": "bugfix", "priority": "P3"})
    subscription_with_a_delivery(server)
    # An admin sees every page and every button (cancel, retry, the webhooks link).
    tasks = [f"/ui/tasks/{gated['task_id']}", f"/ui/tasks/{failed['task_id']}"]
    found = {}
    for width in (1280, 390):
        browser.set_window_size(width, 1000)
        browser.delete_all_cookies()
        browser.get(f"{server.url}/ui/login")
        found[f"/ui/login@{width}"] = axe_violations(browser)
        sign_in(browser, server, "admin")
        for path in [*PAGES, *tasks]:
            browser.get(server.url + path)
            assert not browser.title.startswith("Error"), f"{path}: {browser.title}"
            found[f"{path}@{width}"] = axe_violations(browser)
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{path} scrolls sideways at {width} px"
    browser.set_window_size(1280, 1000)
    assert {page: v for page, v in found.items() if v} == {}


def test_screenshots_of_the_inbox_and_a_task(own_browser, live_server, tmp_path):
    target = Path(os.environ.get("ORCHESTRATOR_UI_SCREENSHOTS") or tmp_path)
    server = live_server(workers=1)  # its own key prefix: an inbox with only these two
    task = create(server, {**GATED, "payload": {"environment": "production", "service": "api"}})
    create(server, {"type": "feature", "priority": "P1", "payload": {"flag": "new-inbox"}})
    sign_in(own_browser, server, "ops")
    for width, height in ((1280, 1000), (390, 1300)):
        own_browser.set_window_size(width, height)
        own_browser.get(f"{server.url}/ui/")
        assert own_browser.save_screenshot(str(target / f"ui-inbox-{width}.png"))
        own_browser.get(f"{server.url}/ui/tasks/{task['task_id']}")
        assert own_browser.save_screenshot(str(target / f"ui-task-{width}.png"))
    own_browser.set_window_size(1280, 1000)
    assert PRINCIPALS["ops"] in own_browser.page_source


def test_screenshots_of_the_webhooks_page(own_browser, live_server, tmp_path):
    target = Path(os.environ.get("ORCHESTRATOR_UI_SCREENSHOTS") or tmp_path)
    server = live_server(workers=1)
    for url, events in (
        ("https://hooks.example.com/orchestrator", ["task.*", "approval.*"]),
        ("https://ops.example.com/pager", ["task.failed"]),
    ):
        created = requests.post(
            f"{server.url}/webhooks",
            json={"url": url, "events": events, "description": "team notifications"},
            headers=HEADERS["admin"],
            timeout=10,
        )
        assert created.status_code == 201, created.text
        sent = requests.post(
            f"{server.url}/webhooks/{created.json()['webhook_id']}/test",
            headers=HEADERS["admin"],
            timeout=10,
        )
        assert sent.status_code == 202, sent.text
    sign_in(own_browser, server, "admin")
    for width, height in ((1280, 1000), (390, 1300)):
        own_browser.set_window_size(width, height)
        own_browser.get(f"{server.url}/ui/webhooks")
        assert "https://ops.example.com/pager" in own_browser.page_source
        assert own_browser.save_screenshot(str(target / f"ui-webhooks-{width}.png"))
    own_browser.set_window_size(1280, 1000)
