"""The commands of issue 11 in this process (`main([...])`), on both dialects where they touch SQL.

`incidents` lists, `--open`, `--json`, `ack` and `silence`; `status` reports open incidents and exits 1 on
an error-level one; `runs` has headers and `--status abandoned`; `stats` prints text or JSON with every
figure; `rerun --queue` twice queues once; every command but `simulate` and `alerts test` names its
database on stderr with the password masked; `alerts test` reports each channel (a real HTTP receiver).
"""

from __future__ import annotations

import getpass
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy.engine import make_url

import pipeline.runtime.cli as cli_module
from benchmarks.harness.processes import free_port
from pipeline.config import Settings, get_settings, mask_url_password
from pipeline.database import DatabaseService
from pipeline.errors import DatabaseNotFound, DatabaseUnavailable
from pipeline.services import incidents
from pipeline.store.incidents import IncidentFinding
from tests.support.cli import Cli, in_process_cli
from tests.support.factories import finished_run, store_blocks

PASSWORD = "s3cret-Pa55word"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path) -> Iterator[Cli]:  # noqa: ANN001
    """`crypto-pipeline ARGS` in this process against the database at `url`."""
    run = in_process_cli(monkeypatch, capsys, tmp_path)
    yield lambda url, *args, **env: run(*args, DATABASE_URL=url, **env)
    get_settings.cache_clear()


def url_of(db: DatabaseService) -> str:
    return db.settings.DATABASE_URL


def add_run(
    db: DatabaseService,
    status: str,
    *,
    data_type: str = "blocks",
    error_class: str = "RetriableSourceError",
    heights: tuple[int, int] | None = None,
) -> int:
    return finished_run(
        db, status, data_type=data_type, params={"chain": "bitcoin"}, error_class=error_class,
        heights=heights or (None, None),
    )  # fmt: skip


def table(out: str) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of a table whose cells are separated by two or more spaces."""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    split = [re.split(r"\s{2,}", line) for line in lines]
    return split[0], split[1:]


INCIDENT_HEADERS = [
    "id", "status", "level", "kind", "unit or key", "opened (UTC)", "duration",
    "acknowledged by", "silenced until", "resolved by", "summary",
]  # fmt: skip


@pytest.fixture
def two_incidents(db: DatabaseService) -> tuple[int, int, int]:
    """An open incident (transactions) and one resolved by a later run (blocks): (open id, resolved id,
    the run that resolved it)."""
    add_run(db, "failed")
    add_run(db, "failed", data_type="transactions")
    incidents.evaluate(db, db.settings, kinds=["unit"])
    fixed = add_run(db, "success")
    incidents.evaluate(db, db.settings, kinds=["unit"])
    by_key = {i.key: i for i in db.get_incidents()}
    return by_key["blockchair/transactions/bitcoin"].id, by_key["blockchair/blocks/bitcoin"].id, fixed


# ---------------------------------------------------------------------------------------------- incidents


def test_incidents_lists_open_first_with_headers(db, cli, two_incidents):
    open_id, resolved_id, fixed = two_incidents
    done = cli(url_of(db), "incidents")
    assert done.code == 0, done
    headers, rows = table(done.out)
    assert headers == INCIDENT_HEADERS
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (str(open_id), "open", "error", "unit", "blockchair transactions bitcoin"),
        (str(resolved_id), "resolved", "error", "unit", "blockchair blocks bitcoin"),
    ]
    assert rows[0][-2] == "-"
    assert rows[1][-2] == f"run #{fixed}"
    assert "HTTP 503" in rows[0][-1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", rows[0][5])

    assert cli(url_of(db), "incidents", "list").out == done.out  # `list` is the default
    _, only_open = table(cli(url_of(db), "incidents", "--open").out)
    assert [r[0] for r in only_open] == [str(open_id)]
    _, limited = table(cli(url_of(db), "incidents", "--open", "list", "--limit", "1").out)
    assert [r[0] for r in limited] == [str(open_id)]


def test_incidents_json_is_every_field_of_each_incident(db, cli, two_incidents):
    open_id, resolved_id, fixed = two_incidents
    done = cli(url_of(db), "incidents", "--json")
    assert done.code == 0, done
    listed = json.loads(done.out)
    assert [i["id"] for i in listed] == [open_id, resolved_id]
    assert listed[1]["resolved_by_run_id"] == fixed
    assert listed[0] == db.get_incident(open_id).model_dump(mode="json")
    assert json.loads(cli(url_of(db), "incidents", "list", "--open", "--json").out) == listed[:1]


def test_ack_records_who_and_why_defaulting_to_the_os_user(db, cli, two_incidents, monkeypatch):
    open_id, _resolved_id, _fixed = two_incidents
    done = cli(url_of(db), "incidents", "ack", str(open_id), "--by", "alice", "--note", "restarting the node")
    assert done.code == 0, done
    assert done.out == f"incident #{open_id} acknowledged by alice\n"
    acked = db.get_incident(open_id)
    assert (acked.acknowledged_by, acked.ack_note) == ("alice", "restarting the node")
    assert acked.acknowledged_at is not None
    _, rows = table(cli(url_of(db), "incidents", "--open").out)
    assert rows[0][INCIDENT_HEADERS.index("acknowledged by")] == "alice"

    monkeypatch.setattr(getpass, "getuser", lambda: "bob")
    assert cli(url_of(db), "incidents", "ack", str(open_id)).code == 0
    assert db.get_incident(open_id).acknowledged_by == "bob"

    missing = cli(url_of(db), "incidents", "ack", "999999")
    assert missing.code == 2
    assert missing.err.splitlines()[-1] == "crypto-pipeline: error: no incident #999999"


def test_silence_for_a_while_then_off(db, cli, two_incidents, monkeypatch):
    open_id, _resolved_id, _fixed = two_incidents
    monkeypatch.setattr(getpass, "getuser", lambda: "carol")
    before = db.db_now()
    done = cli(url_of(db), "incidents", "silence", str(open_id), "--for", "2h")
    assert done.code == 0, done
    silenced = db.get_incident(open_id)
    assert silenced.silenced_by == "carol"
    assert before + timedelta(hours=2) <= silenced.silenced_until <= db.db_now() + timedelta(hours=2)
    assert f"incident #{open_id}: alerts silenced until " in done.out
    _, rows = table(cli(url_of(db), "incidents", "--open").out)
    assert rows[0][INCIDENT_HEADERS.index("silenced until")] != "-"

    done = cli(url_of(db), "incidents", "silence", str(open_id), "--off")
    assert done.code == 0, done
    lifted = db.get_incident(open_id)
    assert (lifted.silenced_until, lifted.silenced_by) == (None, None)

    for bad in (["--for", "2 hours"], ["--for", "0m"], ["--for", "400d"], [], ["--for", "1h", "--off"]):
        refused = cli(url_of(db), "incidents", "silence", str(open_id), *bad)
        assert refused.code == 2, (bad, refused)
        assert len(refused.err.splitlines()) == 1, refused  # argparse refuses before the database line


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30m", timedelta(minutes=30)), ("2h", timedelta(hours=2)), ("1d", timedelta(days=1)),
     ("1h30m", timedelta(minutes=90)), ("45S", timedelta(seconds=45))],
)  # fmt: skip
def test_silence_durations(text, expected):
    assert cli_module._duration(text) == expected


def test_listing_incidents_never_creates_a_database_and_evaluate_writes(cli, tmp_path):
    url = f"sqlite:///{tmp_path}/absent/crypto.db"
    for args in (["incidents"], ["incidents", "--json"], ["incidents", "ack", "1"]):
        done = cli(url, *args)
        assert done.code == DatabaseNotFound.exit_code, done
    assert not (tmp_path / "absent").exists()
    done = cli(url, "incidents", "--evaluate")  # runs the rules first: a writer, like `watch`
    assert done.code == 0, done
    assert (tmp_path / "absent" / "crypto.db").is_file()


def test_incidents_evaluate_opens_what_the_rules_find(db, cli):
    add_run(db, "failed")
    assert cli(url_of(db), "incidents", "--open").out == "no open incidents\n"
    _, rows = table(cli(url_of(db), "incidents", "--open", "--evaluate").out)
    assert [(r[1], r[4]) for r in rows if r[3] == "unit"] == [("open", "blockchair blocks bitcoin")]


# ---------------------------------------------------------------------------------------------- status


def test_status_lists_open_incidents_and_exits_1_while_an_error_level_one_is_open(db, cli):
    empty = cli(url_of(db), "status", "--json")
    assert empty.code == 0, empty
    assert json.loads(empty.out)["incidents"] == []
    assert "incidents: none open" in cli(url_of(db), "status").out

    failed = add_run(db, "failed")
    incidents.evaluate(db, db.settings, kinds=["unit"])
    (incident,) = db.get_incidents(open_only=True)
    done = cli(url_of(db), "status", "--json")
    assert done.code == 1, done
    report = json.loads(done.out)
    assert report["ok"] is False
    assert report["incidents"] == [incident.model_dump(mode="json")]
    assert report["incidents"][0]["first_run_id"] == failed
    text = cli(url_of(db), "status")
    assert text.code == 1
    assert "incidents:\n" in text.out
    assert f"  error   #{incident.id} unit blockchair blocks bitcoin, open " in text.out

    add_run(db, "success")
    incidents.evaluate(db, db.settings, kinds=["unit"])
    done = cli(url_of(db), "status", "--json")
    assert done.code == 0, done
    assert json.loads(done.out)["incidents"] == []
    assert json.loads(done.out)["ok"] is True


def test_status_lists_a_warning_level_incident_but_stays_healthy(db, cli):
    finding = IncidentFinding(kind="quality", key="prices/bitcoin", level="warning", summary="a price gap")
    db.reconcile_incidents(["quality"], [finding])
    done = cli(url_of(db), "status", "--json")
    assert done.code == 0, done
    assert [i["key"] for i in json.loads(done.out)["incidents"]] == ["prices/bitcoin"]
    text = cli(url_of(db), "status").out
    assert "  warning #" in text
    assert "quality prices/bitcoin" in text


# ---------------------------------------------------------------------------------------------- runs


RUN_HEADERS = [
    "id",
    "started (UTC)",
    "status",
    "source/type",
    "coin",
    "slice",
    "fetched",
    "requests",
    "error",
]


def test_runs_prints_headers_and_abandoned_selects_abandoned_failures(db, cli):
    ok = add_run(db, "success", heights=(10, 19))
    failed = add_run(db, "failed")
    abandoned = add_run(db, "failed", error_class="Abandoned")
    done = cli(url_of(db), "runs")
    assert done.code == 0, done
    headers, rows = table(done.out)
    assert headers == RUN_HEADERS
    assert [r[0] for r in rows] == [str(abandoned), str(failed), str(ok)]
    assert rows[2][2:6] == ["success", "blockchair/blocks", "bitcoin", "10 .. 19"]
    assert rows[1][-1] == "RetriableSourceError: HTTP 503 from the source"

    _, rows = table(cli(url_of(db), "runs", "--status", "abandoned").out)
    assert [(r[0], r[2], r[-1]) for r in rows] == [
        (str(abandoned), "failed", "Abandoned: HTTP 503 from the source")
    ]
    _, rows = table(cli(url_of(db), "runs", "--status", "failed").out)
    assert [r[0] for r in rows] == [str(abandoned), str(failed)]  # failed still includes them
    _, rows = table(cli(url_of(db), "runs", "--status", "abandoned", "--source", "coingecko").out)
    assert rows == []
    assert cli(url_of(db), "runs", "--status", "partial").out == "no runs with status partial\n"


# ---------------------------------------------------------------------------------------------- stats


def test_stats_prints_every_figure_as_text_and_json_with_json(db, cli):
    store_blocks(db, "BTC", range(100, 110))
    db.insert_market_prices(
        [
            {"coin_id": "bitcoin", "price_date": date(2024, 5, d), "price_usd": Decimal("10.25")}
            for d in (1, 2, 4)
        ]
    )
    add_run(db, "failed")
    done = cli(url_of(db), "stats", "--json")
    assert done.code == 0, done
    stats = json.loads(done.out)
    assert stats["total_blocks"] == 10
    assert stats["latest_block_by_coin"] == {"BTC": 109}

    text = cli(url_of(db), "stats")
    assert text.code == 0, text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.out)
    out = text.out
    assert "blocks: 10  transactions: 0  addresses: 0  prices: 3" in out
    assert "runs: 1 recorded, 1 failed in the last 24 h" in out
    assert re.search(r"^database size: (\d[\d.]* [KMG]?B) \([\d,]+ bytes\)$", out, re.MULTILINE), out
    for table_name, rows in stats["rows_per_table"].items():
        assert re.search(rf"^  {table_name}\s+{rows:,}$", out, re.MULTILINE), (table_name, out)
    assert re.search(r"^  chain\s+lowest\s+latest\s+blocks$", out, re.MULTILINE), out
    assert re.search(r"^  BTC\s+100\s+109\s+10$", out, re.MULTILINE), out
    assert re.search(r"^  coin\s+first day\s+last day\s+days\s+missing$", out, re.MULTILINE), out
    assert re.search(r"^  bitcoin\s+2024-05-01\s+2024-05-04\s+3\s+1$", out, re.MULTILINE), out


# ---------------------------------------------------------------------------------------------- rerun --queue


def test_rerun_queue_twice_says_the_run_already_has_a_request(db, cli):
    run_id = add_run(db, "failed", heights=(1, 50))
    first = cli(url_of(db), "rerun", "--queue", str(run_id))
    assert first.code == 0, first
    request = db.open_request_for(run_id)
    assert request is not None
    assert first.out == f"rerun request {request.id} for run {run_id}: pending\n"

    second = cli(url_of(db), "rerun", "--queue", str(run_id))
    assert second.code == 0, second
    assert second.out == f"run #{run_id} already has request #{request.id} pending; nothing queued\n"
    assert db.latest_request_for(run_id) == request  # nothing new

    unknown = cli(url_of(db), "rerun", "--queue", "999999")
    assert unknown.code == 2
    assert "999999" in unknown.err.splitlines()[-1]


# ---------------------------------------------------------------------------------------------- stderr


def with_password(url: str) -> str:
    return make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def test_every_command_names_its_database_on_stderr_with_the_password_masked(db, cli):
    url = url_of(db)
    if db.dialect == "postgresql":
        url = with_password(url)  # the local test server trusts the user and ignores the password
        assert PASSWORD in url
    expected = f"database: {mask_url_password(url)}"
    assert PASSWORD not in expected
    for args in (["status"], ["stats"], ["runs"], ["incidents"], ["init-db"], ["gaps"]):
        done = cli(url, *args)
        assert done.err.splitlines()[0] == expected, (args, done)
        assert PASSWORD not in done.err + done.out, args
    failing = cli(url, "rerun", "999999")
    assert failing.err.splitlines() == [expected, "crypto-pipeline: error: no ingestion run with id 999999"]


def test_the_database_line_comes_before_a_database_error_and_masks_the_password(cli):
    url = f"postgresql://root:{PASSWORD}@127.0.0.1:{free_port()}/crypto"
    done = cli(url, "status")
    assert done.code == DatabaseUnavailable.exit_code, done
    lines = done.err.splitlines()
    assert lines[0] == f"database: postgresql://root:***@127.0.0.1:{url.rsplit(':', 1)[1]}"
    assert lines[1].startswith("crypto-pipeline: error: ")
    assert PASSWORD not in done.err


def test_simulate_and_alerts_test_name_no_database(cli, monkeypatch, tmp_path):
    import pipeline.simulator

    monkeypatch.setattr(pipeline.simulator, "serve_forever", lambda *_args, **_kwargs: None)
    url = f"sqlite:///{tmp_path}/crypto.db"
    done = cli(url, "simulate", "--port", "0")
    assert done.code == 0, done
    assert done.err == ""

    none = cli(url, "alerts", "test")
    assert none.code == 2, none
    assert none.err.splitlines() == [
        "crypto-pipeline: error: no alert channel is configured; set ALERT_WEBHOOK_URL,"
        " ALERT_SLACK_WEBHOOK_URL, or ALERT_SMTP_URL with ALERT_EMAIL_TO"
    ]
    assert not (tmp_path / "crypto.db").exists()


# ---------------------------------------------------------------------------------------------- watch


def test_watch_runs_the_watcher_with_the_settings_and_exits_with_its_code(cli, monkeypatch, tmp_path):
    import pipeline.runtime.watch

    seen: list[Settings] = []
    monkeypatch.setattr(pipeline.runtime.watch, "run_watch", lambda settings: seen.append(settings) or 0)
    url = f"sqlite:///{tmp_path}/crypto.db"
    done = cli(url, "watch")
    assert done.code == 0, done
    assert [s.DATABASE_URL for s in seen] == [url]
    assert done.err.splitlines() == [f"database: {url}"]


# ---------------------------------------------------------------------------------------------- alerts test


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver: 204 on /ok, 500 on anything else; keeps what it was sent."""

    received: list[tuple[str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Receiver.received.append((self.path, json.loads(body or b"{}")))
        self.send_response(204 if self.path == "/ok" else 500)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_alerts_test_reports_each_channel(cli, receiver, tmp_path):
    url = f"sqlite:///{tmp_path}/crypto.db"
    done = cli(url, "alerts", "test", ALERT_WEBHOOK_URL=f"{receiver}/ok", ALERT_BACKOFF_SECONDS=0)
    assert done.code == 0, done
    assert done.out == "webhook: sent (1 attempt)\n"
    assert [path for path, _body in Receiver.received] == ["/ok"]

    Receiver.received = []
    done = cli(
        url,
        "alerts",
        "test",
        ALERT_SLACK_WEBHOOK_URL=f"{receiver}/services/T0001/B0002/broken0token0abcdefgh",
        ALERT_MAX_ATTEMPTS=2,
    )
    assert done.code == 1, done
    lines = done.out.splitlines()
    assert lines[0] == "webhook: sent (1 attempt)"
    assert lines[1].startswith("slack: failed after 2 attempts: HTTP 500 from 127.0.0.1:"), lines
    assert "broken0token" not in lines[1]  # a webhook URL is its own token: never printed
    assert [path for path, _body in Receiver.received] == [
        "/ok",
        *["/services/T0001/B0002/broken0token0abcdefgh"] * 2,
    ]
    assert not (tmp_path / "crypto.db").exists()


def test_an_open_slice_reads_to_the_tip():
    from pipeline.runtime.cli import _run_row
    from pipeline.schemas import DataIngestionLogData

    run = DataIngestionLogData(
        id=7, source="blockchair", data_type="blocks", coin="bitcoin", status="running",
        started_at=datetime(2026, 12, 1, tzinfo=UTC), start_height=870139, end_height=None,
    )  # fmt: skip
    assert _run_row(run)[5] == "870,139 .. tip"
