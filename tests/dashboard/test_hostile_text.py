"""In a real browser: text from outside is shown as text, and the dashboard is not an open door.

Hostile values (a markdown link and image, an HTML <img> and <a>, LaTeX, bold, a colour directive, an
emoji shortcode, a bare domain) are stored wherever outside text lands: run errors, reject reasons and
samples, replay parameters, worker ids, rerun-request errors, quality findings, coin names, addresses, and
a shared link's query string. Every image and link in them points at a local server that records hits.
Every page (and a run's detail panel) is then opened in chromium; no link, image, KaTeX or bold element
may come from those values, and the server must see no request.

The same browser checks the access rules with real requests: a foreign Host name (chromium resolves
evil.example to 127.0.0.1, which is DNS rebinding) gets only a refusal; a dashboard bound to 0.0.0.0
without a login is read-only and says why. Finally a gallery page renders every markdown construct through
`literal()` in each kind of element, and none is interpreted. Screenshots: test-artifacts/screenshots/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmarks.harness.processes import free_port
from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.models import BlockchainAddress, CoinMetadata, DataIngestionLog
from tests.dashboard.helpers import ROOT
from tests.dashboard.markdown_constructs import CONSTRUCTS
from tests.dashboard.seed import populate
from tests.support.browser import SCREENSHOTS, chromium_page, needs_chromium
from tests.support.settings import make_settings

WORD_JOINER = "\u2060"
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f8ffff3f0005fe02fe"
    "a7d6a4c40000000049454e44ae426082"
)

pytestmark = [pytest.mark.slow, needs_chromium]


# ---------------------------------------------------------------------------------------------- servers


class PixelServer(ThreadingHTTPServer):
    """Answers every GET with a 1x1 PNG and remembers the path: any hit means the browser fetched an
    address a hostile value chose."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                self.wfile.write(PNG)

            def log_message(self, *_args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]


def hostile(port: int, tag: str) -> str:
    """Everything markdown, HTML and Streamlit would interpret, pointing at the pixel server."""
    base = f"http://127.0.0.1:{port}"
    return (
        f"**HOSTILE-{tag}** [link-{tag}]({base}/link/{tag}) ![x]({base}/pixel.png?{tag}) $x^2$ "
        f"<img src={base}/img/{tag}.png> <a href={base}/a/{tag}>a</a> :red[red-{tag}] :smile: "
        f"www.evil.example {base}/bare/{tag}"
    )


def short(port: int, tag: str) -> str:
    """A hostile name within a coin name's 64 characters."""
    return f"**HOSTILE-{tag}** ![i](http://127.0.0.1:{port}/n.png)<b>b</b>$x$"


@dataclass
class Seeded:
    url: str
    port: int
    failed_run: int
    names: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    incident: int = 0


def seed_hostile(db: DatabaseService, port: int) -> Seeded:
    """The populated test database, with hostile text in every place outside text is stored."""
    from pipeline.services.incidents import evaluate
    from pipeline.services.quality import Finding, record_findings

    populate(db, with_worker=False)
    now = datetime.now(UTC)
    names = {
        "bitcoin": short(port, "BTC"),
        "ethereum": f"<a href=http://127.0.0.1:{port}/e>HOSTILE-ETH</a> :red[x]",
        "dogecoin": f"[HOSTILE-DOGE](http://127.0.0.1:{port}/d) :smile:",
    }
    keys = ("error", "reason", "param", "request", "finding", "link", "note", "delivery")
    texts = {k: hostile(port, k) for k in keys}
    with db.session_factory.begin() as session:
        for coin_id, name in names.items():
            session.query(CoinMetadata).filter_by(coingecko_id=coin_id).update({"name": name})
        # Written as an older version or a hand-edited row could have left it: no validation on the way in.
        session.add(BlockchainAddress(coin_symbol="BTC", address=hostile(port, "address")[:128], balance=1))
        run = DataIngestionLog(
            source="coingecko", data_type="prices", coin="bitcoin", status="failed", trigger="schedule",
            started_at=now - timedelta(minutes=5), finished_at=now - timedelta(minutes=4), requests_made=1,
            error_class="**HOSTILE-CLASS**$x$", error_message=texts["error"],
            worker_id=short(port, "WORKER"), records_rejected=1,
            rejected_samples=[{"reason": texts["reason"], "record": {"price": texts["reason"]}}],
            params={"coin_id": "bitcoin", "start": str(now.date()), "end": str(now.date()),
                    "note": texts["param"]},
        )  # fmt: skip
        session.add(run)
        session.flush()
        run_id = run.id
    db.beat(short(port, "BEAT"), current_job=hostile(port, "job")[:128])
    request = db.request_rerun(run_id, requested_by=short(port, "BY"))
    db.claim_request(request.id, short(port, "CLAIM"))
    db.finish_replay_request(request.id, status="failed", result_run_id=None, error=texts["request"])
    day = now.date() - timedelta(days=3)
    record_findings(
        db,
        run_id,
        [
            Finding("price_move", "warn", "bitcoin", texts["finding"][:128], texts["finding"][:128],
                    texts["finding"][:128], [{"day": str(day), "note": texts["finding"]}]),
            Finding("non_positive_size", "error", short(port, "SUBJ")[:64], "1..2", "1 rows", "> 0",
                    [{"height": 849_990, texts["finding"][:40]: texts["finding"]}]),
        ],
    )  # fmt: skip
    # The failed run opens an incident (its summary quotes the error); people and channels add their text.
    evaluate(db, db.settings, kinds=["unit"])
    incident = db.incident_for_run(run_id)
    assert incident is not None
    db.acknowledge_incident(incident.id, by=short(port, "ACK"), note=texts["note"])
    db.silence_incident(incident.id, until=now + timedelta(hours=1), by=short(port, "SILENCE"))
    delivery = db.claim_delivery(
        incident.id,
        "firing",
        "webhook",
        short(port, "SENDER"),
        retry_after=timedelta(minutes=5),
        max_attempts=3,
    )
    assert delivery is not None
    db.finish_delivery(delivery, sent=False, attempts=1, error=texts["delivery"])
    return Seeded(
        url=db.database_url, port=port, failed_run=run_id, names=names, texts=texts, incident=incident.id
    )


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:  # noqa: S310 - loopback
            return response.status == 200
    except OSError:
        return False


class Streamlit:
    """`streamlit run` of a script as its own process, on a free port."""

    def __init__(self, script: Path, address: str, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(self.port),
                 "--server.address", address, "--server.headless", "true",
                 "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"

    def wait(self) -> None:
        deadline = time.monotonic() + 60
        while not _healthy(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()

    def wait_stopped(self) -> None:
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@dataclass
class Stack:
    seeded: Seeded
    pixel: PixelServer
    local: Streamlit  # bound to 127.0.0.1: writes on, so the request panel shows
    exposed: Streamlit  # bound to 0.0.0.0 without a login: read-only
    gallery: Streamlit


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("hostile")
    pixel = PixelServer()
    threading.Thread(target=pixel.serve_forever, daemon=True).start()
    db = DatabaseService(settings=make_settings(f"sqlite:///{tmp}/hostile.db"))
    db.create_tables()
    seeded = seed_hostile(db, pixel.port)
    db.dispose()
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    env |= {"DATABASE_URL": seeded.url, "COINS": "bitcoin,ethereum,dogecoin", "PYTHONPATH": str(ROOT)}
    app = ROOT / "dashboard" / "app.py"
    servers = [
        Streamlit(app, "127.0.0.1", env, tmp / "local.log"),
        Streamlit(app, "0.0.0.0", env | {"DASHBOARD_ALLOWED_HOSTS": "dash.example"}, tmp / "exposed.log"),
        Streamlit(ROOT / "tests" / "dashboard" / "literal_gallery.py", "127.0.0.1", env, tmp / "gallery.log"),
    ]
    try:
        for server in servers:  # started together, waited for in turn: the start-ups overlap
            server.wait()
        yield Stack(seeded, pixel, *servers)
    finally:
        for server in servers:  # all asked to stop first: they shut down in parallel
            server.stop()
        for server in servers:
            server.wait_stopped()
        pixel.shutdown()


@pytest.fixture(scope="module")
def page(stack: Stack) -> Iterator:
    # evil.example and dash.example resolve to this machine: a rebinding attacker's name, and a name the
    # operator allowed (DASHBOARD_ALLOWED_HOSTS).
    rules = "--host-resolver-rules=MAP evil.example 127.0.0.1, MAP dash.example 127.0.0.1"
    with chromium_page(height=2000, args=(rules,)) as page:
        yield page


def load(page, url: str, *, title: bool = True) -> None:  # noqa: ANN001
    """Open a URL and wait until the script has drawn the page (its title, or the refusal)."""
    page.goto(url)
    page.wait_for_selector('[data-testid="stApp"]')
    selector = '[data-testid="stMainBlockContainer"] h1' if title else '[data-testid="stAlert"]'
    page.wait_for_selector(selector, timeout=60_000)
    wait_idle(page)
    page.wait_for_timeout(500)  # plotly draws after the script has ended


def wait_idle(page) -> None:  # noqa: ANN001
    """Wait for the end of the script run (the app root says so in an attribute) and for every element's
    code to have loaded (placeholders are skeletons until then): only then is everything on the page."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=60_000)
    page.wait_for_function("() => !document.querySelector('[data-testid^=\"stSkeleton\"]')", timeout=60_000)


def screenshot(page, name: str) -> None:  # noqa: ANN001
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


# Elements a hostile value must never become: a link or image to the pixel server (HTML or SVG, i.e.
# plotly), KaTeX, bold/italic/struck text carrying a marker, an emoji, a Streamlit icon.
FIND_INTERPRETED = """(port) => {
  const mark = `127.0.0.1:${port}`;
  const found = [];
  const xlink = 'http://www.w3.org/1999/xlink';
  for (const el of document.querySelectorAll('a')) {
    const href = el.getAttribute('href') || el.getAttributeNS(xlink, 'href') || '';
    if (href.includes(mark) || href.includes('evil.example') || href.startsWith('mailto:'))
      found.push(`a ${href}`);
  }
  for (const el of document.querySelectorAll('img, image, iframe, object, embed, video, audio, source')) {
    const src = el.getAttribute('src') || el.getAttribute('href') || el.getAttributeNS(xlink, 'href') || '';
    if (src.includes(mark)) found.push(`${el.tagName} ${src}`);
  }
  if (document.querySelector('.katex, .katex-display, math')) found.push('katex');
  // Our own bold may wrap a value shown literally ("**HOSTILE-x**" with its asterisks); a value turned
  // into formatting has lost them.
  for (const el of document.querySelectorAll('strong, b, em, i, del, s, code, h1, h2, h3, h4, h5, h6')) {
    const text = el.textContent;
    if (text.includes('HOSTILE') && !text.includes('**HOSTILE'))
      found.push(`${el.tagName} ${text.slice(0, 40)}`);
  }
  for (const el of document.querySelectorAll('tspan')) {
    const style = el.getAttribute('style') || '';
    if (/bold|italic/.test(style) && el.textContent.includes('b')) found.push(`tspan ${style}`);
  }
  if (/[\\u{1F604}\\u{1F44D}\\u{1F680}]/u.test(document.body.innerText)) found.push('emoji');
  return found;
}"""


def interpreted(page, stack: Stack) -> list[str]:  # noqa: ANN001
    return page.evaluate(FIND_INTERPRETED, stack.seeded.port)


def shown(page, selector: str) -> str:  # noqa: ANN001
    """The visible text of the matching elements, without the invisible word joiners literal() adds."""
    return " ".join(page.locator(selector).all_inner_texts()).replace(WORD_JOINER, "")


def flat(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------- A: text


PAGES = ["", "incidents", "runs", "coverage", "prices", "blocks", "database"]


def test_hostile_values_are_shown_as_text_on_every_page(stack, page):
    from playwright.sync_api import expect

    seeded, base = stack.seeded, stack.local.url
    problems: dict[str, list[str]] = {}
    for path in PAGES:
        load(page, f"{base}/{path}")
        if path == "coverage":
            problems["coverage tab"] = interpreted(page, stack)
            screenshot(page, "hostile-coverage")
            page.get_by_role("tab", name="Data quality").click()
            expect(page.get_by_text("Sample rows")).to_be_visible()
            path = "quality"
        assert page.locator('[data-testid="stException"]').count() == 0, path
        problems[path or "overview"] = interpreted(page, stack)
        screenshot(page, f"hostile-{path or 'overview'}")
        if path == "prices":  # metric labels carry the coin names
            labels = page.locator('[data-testid="stMetricLabel"]')
            expect(labels.filter(has_text="**HOSTILE-BTC**")).to_have_count(1)
        if path == "blocks":  # the chain picker's options carry them too
            expect(page.get_by_text("**HOSTILE-BTC**", exact=False).first).to_be_visible()
        if path == "quality":  # the (hidden) heatmap's tick labels (plotly) show the name, tags and all
            expect(page.locator(".ytick text").filter(has_text="<a href=")).to_have_count(1)

    # A shared link whose values are hostile: the warning quotes them, as text.
    link = urllib.parse.quote(seeded.texts["link"])
    load(page, f"{base}/prices?coins={link}&log={link}")
    expect(page.locator('[data-testid="stAlertContentWarning"]').first).to_contain_text("HOSTILE-link")
    warning = shown(page, '[data-testid="stAlertContentWarning"]')
    assert "HOSTILE-link" in warning, warning
    assert "![x](" in warning, warning
    problems["prices?link"] = interpreted(page, stack)

    # The run detail panel: error, worker, rejected samples, parameters, and the failed rerun request.
    load(page, f"{base}/runs?run={seeded.failed_run}")
    expect(page.get_by_text("Rerun request #")).to_be_visible(timeout=30_000)
    for expander in ("Replay parameters", "Rejected samples"):
        page.get_by_text(expander).first.click()
    page.wait_for_timeout(1000)
    problems["runs?run"] = interpreted(page, stack)
    screenshot(page, "hostile-run-detail")
    page.get_by_text("Rerun request #").scroll_into_view_if_needed()
    screenshot(page, "hostile-run-request")
    errors = flat(shown(page, '[data-testid="stAlertContentError"]'))
    assert flat(f"**HOSTILE-CLASS**$x$: {seeded.texts['error']}") in errors, errors
    assert flat(seeded.texts["request"]) in errors, errors
    captions = flat(shown(page, '[data-testid="stCaptionContainer"]'))
    assert flat(short(seeded.port, "WORKER")) in captions
    assert flat(short(seeded.port, "BY")) in captions
    assert flat(short(seeded.port, "CLAIM")) in captions
    # Parameters and rejected samples are tables now (a canvas grid: plain text, read in an AppTest test,
    # tests/dashboard/test_run_detail.py); here it is enough that nothing above was interpreted.

    # The incident view: its summary (the run's error), who acknowledged it and why, who silenced it, and
    # the alert channel's error.
    load(page, f"{base}/incidents?incident={seeded.incident}")
    expect(page.get_by_text(f"Incident #{seeded.incident}").first).to_be_visible()
    problems["incidents?incident"] = interpreted(page, stack)
    screenshot(page, "hostile-incident")
    markdown = flat(shown(page, '[data-testid="stMarkdown"]'))
    for text in (short(seeded.port, "ACK"), seeded.texts["note"], short(seeded.port, "SILENCE")):
        assert flat(text) in markdown, text
    errors = flat(shown(page, '[data-testid="stAlertContentError"]'))
    assert "HOSTILE-CLASS" in errors
    assert "HOSTILE-error" in errors

    page.wait_for_timeout(500)
    assert {name: found for name, found in problems.items() if found} == {}
    assert stack.pixel.hits == []


def test_every_markdown_construct_stays_text_in_every_element(stack, page):
    """The gallery: each construct through literal() in markdown, error, caption, metric label, expander
    label, button label and a segmented control option; the real frontend interprets none of it."""
    load(page, stack.gallery.url)
    screenshot(page, "literal-gallery")
    tags = (
        "a, img, .katex, math, strong, em, del, code, pre, h1, h2, h3, h4, h5, h6, li, blockquote, table, "
        "hr, input[type=checkbox], sup, [data-testid=stIconEmoji]"
    )
    for i, (name, text) in enumerate(CONSTRUCTS.items()):
        box = page.locator(f".st-key-construct_{i}")
        found = box.evaluate(
            """(box, tags) => [...box.querySelectorAll(tags)].map(e => e.tagName + ' ' + e.className)""", tags
        )
        icons = box.locator('[data-testid="stIconMaterial"]').all_inner_texts()
        assert found == [], (name, found)
        assert [i for i in icons if i not in ("keyboard_arrow_right", "expand_more")] == [], (name, icons)
        expected = flat(text)
        markdown = box.locator('[data-testid="stMarkdown"]').first.inner_text().replace(WORD_JOINER, "")
        assert flat(markdown) == expected, name
        error = box.locator('[data-testid="stAlertContentError"]').inner_text().replace(WORD_JOINER, "")
        assert flat(error) == expected, name
    assert stack.pixel.hits == []


# ---------------------------------------------------------------------------------------------- B: access


def test_a_foreign_host_name_gets_only_a_refusal(stack, page):
    """DNS rebinding: a page on evil.example re-points its name at 127.0.0.1 and opens the local port."""
    url = f"http://evil.example:{stack.local.port}/runs?run={stack.seeded.failed_run}"
    load(page, url, title=False)
    screenshot(page, "refused-host")
    text = shown(page, '[data-testid="stAlertContentError"]')
    assert "does not answer to the host name evil.example" in text
    assert "DASHBOARD_ALLOWED_HOSTS" in text
    main = '[data-testid="stMainBlockContainer"]'
    kinds = ("DataFrame", "PlotlyChart", "Metric", "Button", "Json", "Heading")
    for data in ["h1", *(f'[data-testid="st{kind}"]' for kind in kinds)]:
        assert page.locator(f"{main} {data}").count() == 0, data
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    assert "HOSTILE" not in page.locator("body").inner_text()


def test_exposed_dashboard_is_read_only_and_answers_allowed_names(stack, page):
    from playwright.sync_api import expect

    run = stack.seeded.failed_run
    load(page, f"{stack.exposed.url}/runs?run={run}")
    expect(page.get_by_text("Write actions are off.")).to_be_visible()
    expect(page.get_by_text("DASHBOARD_TRUSTED_AUTH_PROXY=true").first).to_be_visible()
    expect(page.get_by_text(f"Run #{run}").first).to_be_visible()  # reading works
    assert page.get_by_role("button", name=f"Rerun run #{run}").count() == 0
    assert page.get_by_role("button", name="Run here", exact=False).count() == 0
    expect(page.get_by_text("Read-only").first).to_be_visible()
    screenshot(page, "exposed-read-only")

    load(page, f"http://dash.example:{stack.exposed.port}/")  # listed in DASHBOARD_ALLOWED_HOSTS
    expect(page.get_by_text("Write actions are off.")).to_be_visible()
    load(page, f"http://evil.example:{stack.exposed.port}/", title=False)
    expect(page.get_by_text("does not answer to the host name evil.example")).to_be_visible()
