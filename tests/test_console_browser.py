"""The web console in a real headless browser (Playwright for Python driving Debian's
chromium): the overview loads with no console errors, a topic created in the page is in
`strom topic list`, a message produced with confluent-kafka shows in the message browser
with its key and headers, and a group's lag in the page matches the client's. Against a
secure broker the page asks for a login, refuses a wrong password and shows the overview
after the right one. Screenshots of each page go to tests/artifacts/console/ (git-ignored).

Skipped with a warning only when Playwright or chromium is not installed (scripts/test
installs both)."""

import os
import subprocess
import uuid
import warnings
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AclOperation, ResourceType

import helpers
from conftest import strom_bin
from httpcheck import start_http_broker
from test_security import add_user, allow, certs, secure_broker  # noqa: F401 (fixtures)

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "console"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Every wait in the page is bounded by this.
PAGE_TIMEOUT_MS = 15_000

pytestmark = pytest.mark.timeout(120)

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None


@pytest.fixture
def page():
    if sync_playwright is None or not os.path.exists(CHROMIUM):
        warnings.warn("console browser tests skipped: Playwright or chromium is not installed")
        pytest.skip("Playwright or chromium is not installed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            p = browser.new_page(viewport={"width": 1280, "height": 900})
            p.set_default_timeout(PAGE_TIMEOUT_MS)
            p.errors = []
            p.on("console", lambda m: p.errors.append(m.text) if m.type == "error" else None)
            p.on("pageerror", lambda e: p.errors.append(str(e)))
            yield p
        finally:
            browser.close()


def cli_topic_list(bootstrap):
    out = subprocess.run([str(strom_bin()), "topic", "list", "--bootstrap", bootstrap],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_console_pages_work_against_kafka_clients(start_broker, page, topic_name):
    b = start_http_broker(start_broker)

    # Overview: loads, shows the broker, no errors in the console.
    page.goto(b.http + "/")
    page.wait_for_selector("#card-topics")
    page.wait_for_selector("#brokers-table tbody tr")
    assert page.inner_text("#card-topics") == "0"
    page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)
    assert page.errors == []

    # Topics: create one in the page; the CLI sees it.
    page.goto(b.http + "/#/topics")
    page.fill("#create-topic-name", topic_name)
    page.fill("#create-topic-partitions", "2")
    page.click("#create-topic-submit")
    page.wait_for_selector(f'#topics-table tr[data-topic="{topic_name}"]')
    assert topic_name in cli_topic_list(b.bootstrap)
    page.screenshot(path=str(ARTIFACTS / "topics.png"), full_page=True)

    # Messages: one from confluent-kafka, with key and headers.
    p = helpers.producer(b.bootstrap)
    p.produce(topic_name, key=b"customer-42", value=b'{"amount": 3}', headers=[("source", b"test-suite")], partition=1)
    assert p.flush(15) == 0
    page.goto(f"{b.http}/#/messages/{topic_name}")
    page.fill("#browse-partition", "1")
    page.fill("#browse-offset", "0")
    page.click("#browse-submit")
    row = page.wait_for_selector('#messages-table tr[data-offset="0"]')
    assert row.query_selector(".key").inner_text() == "customer-42"
    headers = row.query_selector(".headers").inner_text()
    assert "source" in headers and "test-suite" in headers
    assert '"amount": 3' in row.query_selector(".value").inner_text()
    page.screenshot(path=str(ARTIFACTS / "messages.png"), full_page=True)

    # Groups: the lag shown is the client's.
    helpers.produce_values(b.bootstrap, topic_name, [b"m%d" % i for i in range(9)], partition=0)
    group = f"g-{uuid.uuid4().hex[:8]}"
    c = helpers.consumer(b.bootstrap, group=group)
    try:
        c.commit(offsets=[TopicPartition(topic_name, 0, 2)], asynchronous=False)
        _, high = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10, cached=False)
        committed = c.committed([TopicPartition(topic_name, 0)], timeout=10)[0].offset
    finally:
        c.close()
    client_lag = high - committed
    assert client_lag == 7
    page.goto(f"{b.http}/#/groups/{group}")
    cell = page.wait_for_selector(f'#group-offsets tr[data-topic="{topic_name}"][data-partition="0"] .lag')
    assert int(cell.inner_text()) == client_lag
    page.screenshot(path=str(ARTIFACTS / "group.png"), full_page=True)
    page.goto(b.http + "/#/groups")
    page.wait_for_selector(f'#groups-table tr[data-group="{group}"]')
    assert page.inner_text(f'#groups-table tr[data-group="{group}"] .total-lag') == str(client_lag)
    page.screenshot(path=str(ARTIFACTS / "groups.png"), full_page=True)

    assert page.errors == [], page.errors


def test_console_logs_in_against_a_secure_broker(secure_broker, page, topic_name):  # noqa: F811
    b = secure_broker
    add_user(b, "alice", "alice-secret")
    helpers.create_topic(b.bootstrap, topic_name, partitions=1)
    helpers.create_topic(b.bootstrap, topic_name + "-hidden", partitions=1)
    allow(b, "User:alice", ResourceType.TOPIC, topic_name, AclOperation.DESCRIBE)

    # The page loads without credentials and asks for them.
    page.goto(b.http + "/")
    page.wait_for_selector("#login-form", state="visible")
    page.screenshot(path=str(ARTIFACTS / "login.png"), full_page=True)

    page.fill("#login-user", "alice")
    page.fill("#login-password", "wrong")
    page.click("#login-submit")
    page.wait_for_function("document.querySelector('#login-error').textContent.length > 0")
    assert page.inner_text("#login-error") == "invalid username or password"
    assert page.evaluate("sessionStorage.length") == 0, "a refused password is not kept"

    page.fill("#login-password", "alice-secret")
    page.click("#login-submit")
    page.wait_for_selector("#login", state="hidden")
    page.wait_for_selector("#brokers-table tbody tr")
    # The overview counts only the topic alice may describe.
    page.wait_for_function("document.querySelector('#card-topics').textContent === '1'")
    assert page.inner_text("#whoami") == "alice"
    page.screenshot(path=str(ARTIFACTS / "overview-logged-in.png"), full_page=True)

    # Topics: the ACLs decide what is listed.
    page.goto(b.http + "/#/topics")
    page.wait_for_selector(f'#topics-table tr[data-topic="{topic_name}"]')
    assert page.query_selector(f'#topics-table tr[data-topic="{topic_name}-hidden"]') is None
    page.goto(f"{b.http}/#/topics/{topic_name}")
    page.wait_for_selector("#partitions-table tbody tr")
    assert page.is_visible("#configs-hidden"), "configs need DESCRIBE_CONFIGS"
    page.screenshot(path=str(ARTIFACTS / "topic-without-configs.png"), full_page=True)

    # A reload keeps the tab's login.
    page.reload()
    page.wait_for_selector("#partitions-table tbody tr")
    assert page.is_hidden("#login") and page.inner_text("#whoami") == "alice"

    # Logging out forgets the credential.
    page.click("#logout")
    page.wait_for_selector("#login-form", state="visible")
    assert page.evaluate("sessionStorage.length") == 0
    # The only console errors are the refused calls' 401s.
    assert all("401" in e for e in page.errors), page.errors
