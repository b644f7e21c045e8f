"""Incident rules on both dialects: open per unit on a failure that needs a person, resolve on the run that
makes it good, one open incident per key however many evaluators, and the other kinds."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest

from pipeline.database import DatabaseService
from pipeline.models import CoinMetadata
from pipeline.services import incidents
from pipeline.store.runs import RunSlice
from tests.support.factories import finished_run
from tests.support.settings import make_settings


def run(
    db: DatabaseService,
    status: str,
    *,
    data_type: str = "blocks",
    coin: str = "bitcoin",
    trigger: str = "schedule",
    parent: int | None = None,
    error_class: str | None = "RetriableSourceError",
    days: tuple[date, date] | None = None,
) -> int:
    source = "coingecko" if data_type == "prices" else "blockchair"
    return finished_run(
        db, status, source=source, data_type=data_type, coin=coin, trigger=trigger, parent=parent,
        error_class=error_class, days=days or (None, None),
    )  # fmt: skip


def unit_incidents(db: DatabaseService, open_only: bool = False):
    return [i for i in db.get_incidents(open_only=open_only) if i.kind == "unit"]


def test_a_failure_opens_one_incident_per_unit_and_the_next_scheduled_success_resolves_it(db, settings):
    first = run(db, "failed")
    second = run(db, "failed")
    run(db, "failed", data_type="transactions")
    incidents.evaluate(db, settings, kinds=["unit"])
    incidents.evaluate(db, settings, kinds=["unit"])  # evaluating again changes nothing

    open_ = {i.key: i for i in unit_incidents(db, open_only=True)}
    assert set(open_) == {"blockchair/blocks/bitcoin", "blockchair/transactions/bitcoin"}
    blocks = open_["blockchair/blocks/bitcoin"]
    assert (blocks.first_run_id, blocks.last_run_id, blocks.level) == (first, second, "error")
    assert "2 failed runs" in blocks.summary
    assert "HTTP 503" in blocks.summary
    assert incidents.is_error_level_open(db)

    fixed = run(db, "success")
    result = incidents.evaluate(db, settings, kinds=["unit"])
    assert [i.key for i in result.resolved] == ["blockchair/blocks/bitcoin"]
    resolved = db.get_incident(blocks.id)
    assert resolved.resolved_at is not None
    assert resolved.resolved_by_run_id == fixed
    assert resolved.resolution == f"run #{fixed} succeeded"
    assert db.get_run(first).resolved_by_run_id == fixed
    assert db.get_run(second).resolved_by_run_id == fixed
    assert [i.key for i in unit_incidents(db, open_only=True)] == ["blockchair/transactions/bitcoin"]


def test_a_new_failure_after_resolution_opens_a_new_incident(db, settings):
    run(db, "failed")
    incidents.evaluate(db, settings, kinds=["unit"])
    run(db, "success")
    incidents.evaluate(db, settings, kinds=["unit"])
    run(db, "failed")
    incidents.evaluate(db, settings, kinds=["unit"])
    history = unit_incidents(db)
    assert [i.is_open for i in history] == [True, False]  # open first, then newest first


def test_a_rerun_resolves_its_parent_through_a_chain_but_a_backfill_success_does_not_resolve_others(
    db, settings
):
    failed = run(db, "failed", trigger="backfill")
    retry = run(db, "failed", trigger="rerun", parent=failed)
    run(db, "success", trigger="schedule")  # an incremental success does not cover a backfill slice
    incidents.evaluate(db, settings, kinds=["unit"])
    assert len(unit_incidents(db, open_only=True)) == 1

    good = run(db, "success", trigger="rerun", parent=retry)
    incidents.evaluate(db, settings, kinds=["unit"])
    assert unit_incidents(db, open_only=True) == []
    assert db.get_run(failed).resolved_by_run_id == good
    assert db.get_run(retry).resolved_by_run_id == good


@pytest.mark.parametrize("error_class", ["Interrupted", "Abandoned", "DatabaseUnavailable"])
def test_failures_the_pipeline_repairs_itself_open_nothing(db, settings, error_class):
    run(db, "failed", error_class=error_class)
    incidents.evaluate(db, settings, kinds=["unit"])
    assert unit_incidents(db) == []


def test_a_partial_run_and_a_success_open_nothing(db, settings):
    run(db, "partial")
    run(db, "success")
    assert incidents.evaluate(db, settings, kinds=["unit"]).opened == []


def test_concurrent_evaluators_open_one_incident(db, settings):
    run(db, "failed")
    errors: list[BaseException] = []

    def evaluate() -> None:
        try:
            incidents.evaluate(db, settings, kinds=["unit"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=evaluate) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(unit_incidents(db)) == 1


def test_no_live_scheduler_opens_when_the_last_one_died_and_not_when_it_stopped(db, database_url):
    settings = make_settings(database_url, HEARTBEAT_STALE_SECONDS=0.2)
    stale = DatabaseService(settings=settings)
    stale.beat("w1", current_job=None)
    assert incidents.scheduler_findings(stale) == []  # beating
    threading.Event().wait(0.5)
    [found] = incidents.scheduler_findings(stale)
    assert found.kind == "scheduler"
    assert "w1" in found.summary
    stale.stop_worker("w1")
    assert incidents.scheduler_findings(stale) == []  # stopped on purpose


def test_quota_opens_a_warning_near_the_daily_budget(db, database_url):
    settings = make_settings(database_url, BLOCKCHAIR_DAILY_REQUEST_BUDGET=10, QUOTA_WARN_RATIO=0.5)
    run_id = db.start_run(
        RunSlice("blockchair", "blocks", "bitcoin", {}), trigger="schedule", parent_run_id=None
    )
    db.finish_run(run_id, status="success", requests_made=5, finished_at=datetime.now(UTC))
    reconciled = incidents.evaluate(db, settings, kinds=["quota"])
    [quota] = reconciled.opened
    assert (quota.key, quota.level) == ("blockchair", "warning")
    assert "5 requests" in quota.summary
    assert not incidents.is_error_level_open(db)


def test_acknowledge_and_silence(db, settings):
    run(db, "failed")
    [incident] = incidents.evaluate(db, settings, kinds=["unit"]).opened
    acked = db.acknowledge_incident(incident.id, by="alice", note="looking at the 503s")
    assert (acked.acknowledged_by, acked.ack_note) == ("alice", "looking at the 503s")
    until = datetime.now(UTC) + timedelta(hours=1)
    silenced = db.silence_incident(incident.id, until=until, by="alice")
    assert silenced.silenced(datetime.now(UTC))
    assert db.alerts_due(after=timedelta(0), channels=["webhook"]) == []
    db.silence_incident(incident.id, until=None, by="alice")
    assert [e for _, e in db.alerts_due(after=timedelta(0), channels=["webhook"])] == ["firing"]


def test_one_delivery_per_incident_event_and_channel(db, settings):
    run(db, "failed")
    [incident] = incidents.evaluate(db, settings, kinds=["unit"]).opened
    claim = {"retry_after": timedelta(minutes=5), "max_attempts": 5}
    first = db.claim_delivery(incident.id, "firing", "webhook", "w1", **claim)
    assert first is not None
    assert db.claim_delivery(incident.id, "firing", "webhook", "w2", **claim) is None
    assert db.claim_delivery(incident.id, "resolved", "webhook", "w1", **claim) is None  # firing not sent
    db.finish_delivery(first, sent=True, attempts=2, error=None)
    assert db.get_incident(incident.id).notified_at is not None
    assert db.alerts_due(after=timedelta(0), channels=["webhook"]) == []

    run(db, "success")
    incidents.evaluate(db, settings, kinds=["unit"])
    assert [e for _, e in db.alerts_due(after=timedelta(0), channels=["webhook"])] == ["resolved"]
    resolved = db.claim_delivery(incident.id, "resolved", "webhook", "w2", **claim)
    assert resolved is not None
    db.finish_delivery(resolved, sent=True, attempts=1, error=None)
    assert db.alerts_due(after=timedelta(0), channels=["webhook"]) == []
    rows = db.get_deliveries(incident_id=incident.id)
    assert sorted((d.event, d.status, d.attempts) for d in rows) == [
        ("firing", "sent", 2),
        ("resolved", "sent", 1),
    ]


def test_alert_after_holds_back_a_young_incident(db, settings):
    run(db, "failed")
    incidents.evaluate(db, settings, kinds=["unit"])
    assert db.alerts_due(after=timedelta(minutes=10), channels=["webhook"]) == []
    assert len(db.alerts_due(after=timedelta(0), channels=["webhook"])) == 1


def test_each_resolved_incident_is_owed_its_own_resolved_message(db, settings):
    claim = {"retry_after": timedelta(minutes=5), "max_attempts": 5}
    run(db, "failed", data_type="blocks")
    run(db, "failed", data_type="transactions")
    opened = incidents.evaluate(db, settings, kinds=["unit"]).opened
    for incident in opened:
        db.finish_delivery(
            db.claim_delivery(incident.id, "firing", "webhook", "w", **claim),
            sent=True,
            attempts=1,
            error=None,
        )
    run(db, "success", data_type="blocks")
    run(db, "success", data_type="transactions")
    incidents.evaluate(db, settings, kinds=["unit"])
    first, second = sorted(i.id for i in opened)
    db.finish_delivery(
        db.claim_delivery(first, "resolved", "webhook", "w", **claim), sent=True, attempts=1, error=None
    )
    assert [(i.id, e) for i, e in db.alerts_due(after=timedelta(0), channels=["webhook"])] == [
        (second, "resolved")
    ]


def test_a_failed_message_is_owed_again_after_a_while_but_not_for_ever(db, settings):
    run(db, "failed")
    [incident] = incidents.evaluate(db, settings, kinds=["unit"]).opened
    first = db.claim_delivery(
        incident.id, "firing", "webhook", "w", retry_after=timedelta(minutes=5), max_attempts=6
    )
    db.finish_delivery(first, sent=False, attempts=3, error="webhook: HTTP 503")
    assert db.alerts_due(after=timedelta(0), channels=["webhook"]) == []  # failed just now: settled
    later = {"retry_after": timedelta(0), "max_attempts": 6}
    assert [e for _, e in db.alerts_due(after=timedelta(0), channels=["webhook"], **later)] == ["firing"]
    again = db.claim_delivery(incident.id, "firing", "webhook", "w2", **later)
    assert again == first  # the same row, taken over
    db.finish_delivery(again, sent=False, attempts=3, error="webhook: HTTP 503")
    assert db.alerts_due(after=timedelta(0), channels=["webhook"], **later) == []  # 6 attempts: given up
    assert db.claim_delivery(incident.id, "firing", "webhook", "w3", **later) is None
    [row] = db.get_deliveries(incident_id=incident.id)
    assert (row.status, row.attempts) == ("failed", 6)


def test_the_resolving_run_is_of_the_incident_s_own_unit(db, settings):
    run(db, "failed", data_type="blocks")
    run(db, "failed", data_type="transactions")
    run(db, "failed", data_type="blocks")
    incidents.evaluate(db, settings, kinds=["unit"])
    tx_fix = run(db, "success", data_type="transactions")
    incidents.evaluate(db, settings, kinds=["unit"])
    blocks_fix = run(db, "success", data_type="blocks")
    incidents.evaluate(db, settings, kinds=["unit"])
    by_key = {i.key: i.resolved_by_run_id for i in unit_incidents(db)}
    assert by_key == {"blockchair/blocks/bitcoin": blocks_fix, "blockchair/transactions/bitcoin": tx_fix}


def test_a_price_run_makes_good_only_a_failure_whose_days_it_covers(db, settings):
    failed = run(db, "failed", data_type="prices", days=(date(2026, 11, 1), date(2026, 11, 30)))
    run(db, "success", data_type="prices", days=(date(2026, 12, 1), date(2026, 12, 1)))  # the latest price
    incidents.evaluate(db, settings, kinds=["unit"])
    assert len(unit_incidents(db, open_only=True)) == 1
    covering = run(db, "success", data_type="prices", days=(date(2026, 11, 1), date(2026, 11, 30)))
    incidents.evaluate(db, settings, kinds=["unit"])
    assert unit_incidents(db, open_only=True) == []
    assert db.get_run(failed).resolved_by_run_id == covering


def test_a_coin_taken_out_of_ingestion_no_longer_keeps_its_incident_open(db, settings):
    run(db, "failed", coin="dogecoin")
    incidents.evaluate(db, settings, kinds=["unit"])
    assert len(unit_incidents(db, open_only=True)) == 1
    with db.engine.begin() as conn:
        conn.execute(
            CoinMetadata.__table__.update().where(CoinMetadata.symbol == "DOGE").values(is_active=False)
        )
    incidents.evaluate(db, settings, kinds=["unit"])
    assert unit_incidents(db, open_only=True) == []


def test_an_older_dead_scheduler_is_history_once_a_newer_one_stopped_cleanly(db, database_url):
    settings = make_settings(database_url, HEARTBEAT_STALE_SECONDS=0.2)
    service = DatabaseService(settings=settings)
    service.beat("killed", current_job=None)
    threading.Event().wait(0.3)
    service.beat("stopped", current_job=None)
    service.stop_worker("stopped")
    threading.Event().wait(0.3)
    assert incidents.scheduler_findings(service) == []


def test_findings_read_before_another_watcher_resolved_do_not_reopen(db, settings):
    run(db, "failed")
    stale_moment = db.db_now()
    stale = incidents.unit_findings(db)  # read while the unit was failing
    incidents.evaluate(db, settings, kinds=["unit"])
    run(db, "success")
    incidents.evaluate(db, settings, kinds=["unit"])  # a second watcher resolves it
    reopened = db.reconcile_incidents(["unit"], stale, observed_at=stale_moment).opened
    assert reopened == []
    assert unit_incidents(db, open_only=True) == []


def test_a_permanent_refusal_is_not_tried_again(db, settings):
    run(db, "failed")
    [incident] = incidents.evaluate(db, settings, kinds=["unit"]).opened
    later = {"retry_after": timedelta(0), "max_attempts": 6}
    claim = db.claim_delivery(incident.id, "firing", "webhook", "w", **later)
    db.finish_delivery(claim, sent=False, attempts=1, error="webhook: HTTP 404", worker_id="w", give_up=6)
    assert db.alerts_due(after=timedelta(0), channels=["webhook"], **later) == []
    assert db.claim_delivery(incident.id, "firing", "webhook", "w2", **later) is None


def test_a_sender_that_lost_its_claim_records_nothing(db, settings):
    run(db, "failed")
    [incident] = incidents.evaluate(db, settings, kinds=["unit"]).opened
    later = {"retry_after": timedelta(0), "max_attempts": 6}
    claim = db.claim_delivery(incident.id, "firing", "webhook", "slow", **later)
    assert db.claim_delivery(incident.id, "firing", "webhook", "fast", **later) == claim  # taken over
    db.finish_delivery(claim, sent=True, attempts=1, error=None, worker_id="fast")
    db.finish_delivery(claim, sent=False, attempts=5, error="late", worker_id="slow")  # ignored
    [row] = db.get_deliveries(incident_id=incident.id)
    assert (row.status, row.attempts, row.claimed_by) == ("sent", 1, "fast")
