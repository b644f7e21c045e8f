"""Streamlit's login for real: an OpenID Connect provider on 127.0.0.1 (tests/support/oidc_provider.py, built
on Authlib), the dashboard (`streamlit run`) with `[auth]` in its secrets pointing at it, and Chromium.

A viewer (on no role list) and an operator (by the `oncall` group of their ID token) log in through the
provider's login page: the viewer is offered no write (Runs' rerun, Incidents' acknowledge, Coverage's fill
gaps) and told which role it needs; the operator is offered them, and a rerun click queues a request whose
audit row names their e-mail. State and nonce make the round trip (the provider saw them, and its ID token
carries the nonce), and a provider that returns a wrong state or nonce gets nobody logged in.

The operator's rerun click, captured from its websocket (the BackMsg that carries the button's trigger), is
replayed into the viewer's websocket: a viewer forging the request the operator's browser sends queues
nothing. (Streamlit drops a trigger for a widget its session did not draw; `data`'s own refusal of a write
that does get through is proved in tests/dashboard/test_login_roles.py.) Screenshots go to
test-artifacts/screenshots/login-*.png.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness.processes import free_port
from pipeline.config import Settings
from pipeline.database import DatabaseService
from tests.dashboard.helpers import ROOT, request_count
from tests.dashboard.seed import Incidents, Seeded, populate, seed_incidents
from tests.support.browser import SCREENSHOTS, chromium_page, needs_chromium
from tests.support.databases import migrated
from tests.support.oidc_provider import OIDCProvider, User
from tests.support.settings import make_settings

pytestmark = [pytest.mark.slow, needs_chromium]

VIEWER = User("anna@example.com", "Anna Viewer", ("readers",))
OPERATOR = User("olaf@example.com", "Olaf Operator", ("oncall",))
STREAM = re.compile(r"/_stcore/stream")


@dataclass
class Stack:
    url: str
    db: DatabaseService
    idp: OIDCProvider
    seeded: Seeded
    incidents: Incidents
    log: Path


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, proc: subprocess.Popen, log: Path
) -> Any:
    """Poll until `condition()` is truthy; fail early if the dashboard died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the dashboard exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            value = condition()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
        return response.status == 200


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("login")
    database_url = f"sqlite:///{tmp}/login.db"
    db = migrated(make_settings(database_url))
    seeded = populate(db)
    incidents = seed_incidents(db, coin="litecoin")
    port = free_port()
    # "localhost", not 127.0.0.1: the address the browser opens must be the redirect URI's origin, or the
    # login's cookies (set on the callback) are not sent back to the app.
    url = f"http://localhost:{port}"
    with OIDCProvider([VIEWER, OPERATOR], redirect_uri=f"{url}/oauth2callback") as idp:
        secrets = tmp / "secrets.toml"
        secrets.write_text(
            "[auth]\n"
            f'redirect_uri = "{url}/oauth2callback"\n'
            f'cookie_secret = "{os.urandom(24).hex()}"\n'
            f'client_id = "{idp.client.client_id}"\n'
            f'client_secret = "{idp.client.client_secret}"\n'
            f'server_metadata_url = "{idp.metadata_url}"\n'
        )
        env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
        env |= {
            "DATABASE_URL": database_url,
            "COINS": "bitcoin,ethereum,dogecoin",
            "DASHBOARD_OPERATORS": "group:oncall",
            "PYTHONUNBUFFERED": "1",
        }
        log = tmp / "dashboard.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                 "--server.address", "127.0.0.1", "--server.headless", "true",
                 "--secrets.files", str(secrets),  # the [auth] pointing at the provider
                 "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for(lambda: http_ok(f"{url}/_stcore/health"), 60, "the dashboard", proc, log)
            yield Stack(url=url, db=db, idp=idp, seeded=seeded, incidents=incidents, log=log)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            db.dispose()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    """One headless Chromium for the module; each user gets a context of their own (`fresh_page`)."""
    with chromium_page(height=1800) as page:
        yield page.context.browser


@contextmanager
def fresh_page(browser: Any) -> Iterator[Any]:
    """A page in a new browser context: no cookie, so nobody is logged in."""
    context = browser.new_context(viewport={"width": 1440, "height": 1800})
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"login-{name}.png"
    page.wait_for_timeout(800)  # let the last rerun settle
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def open_page(page: Any, stack: Stack, path: str) -> None:
    page.goto(f"{stack.url}/{path}")
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=60_000)


def log_in(page: Any, stack: Stack, user: User) -> None:
    """Log in through the sidebar's button and the provider's login page; back on the dashboard."""
    from playwright.sync_api import expect

    open_page(page, stack, "")
    page.get_by_role("button", name="Log in").first.click()
    page.wait_for_url(f"{stack.idp.url}/authorize*", timeout=30_000)
    page.get_by_role("button", name=f"Log in as {user.name} ({user.email})").click()
    page.wait_for_url(f"{stack.url}/**", timeout=30_000)
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=60_000)
    expect(page.get_by_test_id("stSidebar").get_by_text(as_shown(user.email))).to_be_visible(timeout=30_000)


def as_shown(text: str) -> re.Pattern[str]:
    """Text as the page shows it: `literal()` puts a word joiner after an e-mail's "@" (no autolink)."""
    return re.compile(re.escape(text).replace("@", "@\u2060?"))


def writes_shown(page: Any) -> list[str]:
    labels = page.locator('[data-testid="stButton"] button').all_inner_texts()
    return [t for t in labels if re.search(r"Rerun|Run here|Fill gaps|Acknowledge|Silence", t)]


def back_messages(frame: bytes | str) -> Any:
    from streamlit.proto.BackMsg_pb2 import BackMsg

    return BackMsg.FromString(frame) if isinstance(frame, bytes) else None


def forward_kind(frame: bytes | str) -> str | None:
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    if not isinstance(frame, bytes):
        return None
    try:
        return ForwardMsg.FromString(frame).WhichOneof("type")
    except Exception:  # noqa: BLE001 - not a ForwardMsg: nothing to count
        return None


class Relay:
    """Playwright's websocket route between a page and the dashboard: forwards both ways, keeps what the
    page sent and counts the script runs the server finished; `hold` drops the page's frames that match."""

    def __init__(self, hold: Callable[[Any], bool] | None = None) -> None:
        self.sent: list[bytes] = []
        self.held: list[bytes] = []
        self.finished = 0
        self.hold = hold
        self.server: Any = None

    def __call__(self, ws: Any) -> None:
        self.server = ws.connect_to_server()

        def from_page(message: bytes | str) -> None:
            msg = back_messages(message)
            if isinstance(message, bytes) and msg is not None and self.hold and self.hold(msg):
                self.held.append(message)
                return
            if isinstance(message, bytes):
                self.sent.append(message)
            self.server.send(message)

        def from_server(message: bytes | str) -> None:
            if forward_kind(message) == "script_finished":
                self.finished += 1
            ws.send(message)

        ws.on_message(from_page)
        self.server.on_message(from_server)


def triggers(msg: Any) -> list[str]:
    """The ids of the buttons a BackMsg says were clicked."""
    if msg.WhichOneof("type") != "rerun_script":
        return []
    return [w.id for w in msg.rerun_script.widget_states.widgets if w.WhichOneof("value") == "trigger_value"]


# ---------------------------------------------------------------------------------------------- tests


def test_state_and_nonce_make_the_round_trip_and_a_wrong_one_logs_nobody_in(stack, browser):
    from playwright.sync_api import expect

    with fresh_page(browser) as page:
        log_in(page, stack, VIEWER)
        sent = stack.idp.authorizations[-1]
        assert sent["user"] == VIEWER.email
        assert sent["state"]
        assert sent["nonce"]
        assert sent["code_challenge_method"] == "S256"  # PKCE: the discovery document offers S256
        assert sent["redirect_uri"] == f"{stack.url}/oauth2callback"
        assert stack.idp.id_tokens[-1]["nonce"] == sent["nonce"]
        assert stack.idp.id_tokens[-1]["groups"] == ["readers"]
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("button", name="Log in").first).to_be_visible(timeout=30_000)

    for tamper in ("nonce", "state"):
        stack.idp.tamper = tamper
        try:
            with fresh_page(browser) as page:
                open_page(page, stack, "")
                page.get_by_role("button", name="Log in").first.click()
                page.get_by_role("button", name=f"Log in as {OPERATOR.name} ({OPERATOR.email})").click()
                page.wait_for_url(f"{stack.url}/**", timeout=30_000)
                page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=60_000)
                expect(page.get_by_role("button", name="Log in").first).to_be_visible(timeout=30_000)
                assert page.get_by_text(as_shown(OPERATOR.email)).count() == 0, tamper
                if tamper == "nonce":  # Authlib (in Streamlit) checks the ID token's nonce against its own
                    assert stack.idp.id_tokens[-1]["nonce"] != stack.idp.authorizations[-1]["nonce"]
                    screenshot(page, "wrong-nonce")
                # Why, in the dashboard's log: the token exchange refused, or no login waits for that state.
                said = (
                    "OAuth token exchange failed"
                    if tamper == "nonce"
                    else "Missing provider for OAuth callback"
                )
                assert said in stack.log.read_text(), stack.log.read_text()[-2000:]
        finally:
            stack.idp.tamper = None


def test_a_viewer_sees_no_write_button(stack, browser):
    from playwright.sync_api import expect

    failed = stack.seeded.runs["failed"]
    with fresh_page(browser) as page:
        log_in(page, stack, VIEWER)
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_text(as_shown(f"{VIEWER.email} · viewer"))).to_be_visible()
        expect(sidebar.get_by_role("button", name="Log out")).to_be_visible(timeout=30_000)

        open_page(page, stack, f"runs?run={failed}")
        expect(page.get_by_role("heading", name=re.compile(rf"Run #{failed}"))).to_be_visible(timeout=30_000)
        notice = f"Signed in as {VIEWER.email}, viewer: reruns need the operator role."
        expect(page.get_by_text(as_shown(notice))).to_be_visible()
        assert not writes_shown(page), writes_shown(page)
        screenshot(page, "viewer-runs")

        open_page(page, stack, f"incidents?incident={stack.incidents.open_id}")
        expect(page.get_by_text("acknowledging and silencing need the operator role")).to_be_visible(
            timeout=30_000
        )
        assert not writes_shown(page), writes_shown(page)
        assert page.get_by_label("Your name").count() == 0
        screenshot(page, "viewer-incidents")

        open_page(page, stack, "coverage")
        expect(page.get_by_text("gap fills need the operator role")).to_be_visible(timeout=60_000)
        expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=60_000)
        assert not writes_shown(page), writes_shown(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        screenshot(page, "viewer-coverage")
    assert request_count(stack.db) == 0


def test_an_operator_reruns_and_a_viewer_replaying_the_click_queues_nothing(stack, browser):
    from playwright.sync_api import expect

    failed = stack.seeded.runs["failed"]
    rerun_id = f"-rerun_{failed}"
    # 1. The operator's browser: its first rerun click is captured and held back (not sent to the server).
    operator = Relay(hold=lambda msg: any(i.endswith(rerun_id) for i in triggers(msg)))
    with fresh_page(browser) as page:
        page.route_web_socket(STREAM, operator)
        log_in(page, stack, OPERATOR)
        expect(
            page.get_by_test_id("stSidebar").get_by_text(as_shown(f"{OPERATOR.email} · operator"))
        ).to_be_visible()
        open_page(page, stack, f"runs?run={failed}")
        button = page.get_by_role("button", name=f"Rerun run #{failed}")
        expect(button).to_be_visible(timeout=30_000)
        screenshot(page, "operator-runs")
        button.click()
        deadline = time.monotonic() + 10
        while not operator.held and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert operator.held, "the rerun click sent no BackMsg with the button's trigger"
        forged = operator.held[0]
        assert request_count(stack.db, failed) == 0  # held back: the server never saw it

        # 2. The viewer's browser: the operator's click, replayed on the viewer's own websocket.
        viewer = Relay()
        # The same Chromium, a context of its own (its own cookies: another user's session).
        with fresh_page(browser) as viewer_page:
            viewer_page.route_web_socket(STREAM, viewer)
            log_in(viewer_page, stack, VIEWER)
            open_page(viewer_page, stack, f"runs?run={failed}")
            expect(viewer_page.get_by_text("reruns need the operator role")).to_be_visible(timeout=30_000)
            runs_before = viewer.finished
            viewer.server.send(forged)
            deadline = time.monotonic() + 30
            while viewer.finished == runs_before and time.monotonic() < deadline:
                viewer_page.wait_for_timeout(100)
            assert viewer.finished > runs_before, "the server did not run the forged request"
            expect(viewer_page.get_by_text("reruns need the operator role")).to_be_visible()
            assert not writes_shown(viewer_page)
            screenshot(viewer_page, "viewer-forged-rerun")
        assert request_count(stack.db, failed) == 0
        assert not stack.db.audit_entries(action="rerun")

        # 3. The control: the same frame, now sent on the operator's websocket, queues the rerun under their
        # name (so the viewer's replay was a real rerun request, refused for being the viewer's).
        operator.server.send(forged)
        expect(page.get_by_text("Rerun request #")).to_be_visible(timeout=30_000)
        screenshot(page, "operator-rerun-queued")
    assert request_count(stack.db, failed) == 1
    entry = stack.db.audit_entries(action="rerun")[0]
    assert (entry.actor, entry.via, entry.role, entry.outcome, entry.run_id) == (
        OPERATOR.email, "dashboard", "operator", "ok", failed,
    )  # fmt: skip
    request = stack.db.latest_request_for(failed)
    assert request is not None
    assert OPERATOR.email in request.requested_by


def test_an_operator_is_offered_acknowledge_and_fill_gaps(stack, browser):
    from playwright.sync_api import expect

    with fresh_page(browser) as page:
        log_in(page, stack, OPERATOR)
        open_page(page, stack, f"incidents?incident={stack.incidents.open_id}")
        ack = page.get_by_role("button", name=f"Acknowledge incident #{stack.incidents.open_id}")
        expect(ack).to_be_visible(timeout=30_000)
        expect(page.get_by_label("Your name")).to_have_value(OPERATOR.email)
        screenshot(page, "operator-incidents")
        open_page(page, stack, "coverage")
        expect(page.get_by_role("button", name="Fill gaps…")).to_be_visible(timeout=60_000)
        screenshot(page, "operator-coverage")
