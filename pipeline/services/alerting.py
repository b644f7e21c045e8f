"""Deliver what the incidents owe the alert channels: one FIRING and one RESOLVED message per channel.

`deliver_due` asks the store which (incident, event) pairs some channel still owes, claims each message
by inserting its delivery row (the unique key (incident, event, channel) makes one process win, however
many schedulers and watchers deliver), sends it with retries and records the outcome. Each channel has its
own thread for a round, so a channel that is down delays only its own messages, and never ingestion: the
scheduler delivers from its watcher thread, not from the thread that runs units.

Guarantees (README, Alerts): a FIRING message only for an incident open at least ALERT_AFTER_MINUTES and
not silenced; a RESOLVED message only to a channel that got the FIRING one; a delivery that failed every
attempt is tried again after RETRY_AFTER, up to three rounds (a permanent refusal, such as a 404, is not);
one whose sender died mid-way is taken over once a whole send would have ended (`retry_after`). That
last case is the one way a message can arrive twice: a sender killed between sending and recording it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from pipeline.alerts import (
    AlertMessage,
    Channel,
    DeliveryOutcome,
    configured_channels,
    incident_url,
    make_test_message,
    send_with_retries,
)
from pipeline.alerts.channels import BACKOFF_MAX_SECONDS
from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.ranges import utcnow
from pipeline.schemas import IncidentData

logger = logging.getLogger(__name__)

RETRY_AFTER = timedelta(minutes=5)
ROUNDS = 3  # rounds of ALERT_MAX_ATTEMPTS attempts a message gets before it is left `failed`


@dataclass(frozen=True)
class Delivered:
    """One message this process tried to send, and how it went."""

    incident_id: int
    event: str
    channel: str
    ok: bool
    attempts: int
    error: str | None


@dataclass(frozen=True)
class TestDelivery:
    """The outcome of `alerts test` on one channel."""

    channel: str
    ok: bool
    attempts: int
    error: str | None


def message_for(incident: IncidentData, event: str, settings: Settings) -> AlertMessage:
    """The alert about one incident event, with the link to its page on the dashboard."""
    return AlertMessage(
        incident_id=incident.id,
        kind=incident.kind,
        key=incident.key,
        unit=incident.unit,
        status="resolved" if event == "resolved" else "firing",
        level="warning" if incident.level == "warning" else "error",
        summary=incident.summary if event == "firing" else f"{incident.summary} — {incident.resolution}",
        opened_at=incident.opened_at,
        resolved_at=incident.resolved_at if event == "resolved" else None,
        url=incident_url(settings.DASHBOARD_URL, incident.id),
    )


def retry_after(settings: Settings) -> timedelta:
    """How long a claimed message is left to its sender before another process may take it over: longer
    than a whole send with every retry can take, so a slow but live sender is never doubled."""
    one_attempt = settings.ALERT_TIMEOUT_SECONDS * 2 + BACKOFF_MAX_SECONDS  # SMTP: connect, then the talk
    return max(RETRY_AFTER, timedelta(seconds=settings.ALERT_MAX_ATTEMPTS * one_attempt))


def deliver_due(
    db: DatabaseService,
    settings: Settings,
    channels: list[Channel],
    worker_id: str,
    *,
    sleep: Callable[[float], None] | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> list[Delivered]:
    """Send every message some channel owes now; returns what this process sent (or failed to).

    Stops claiming new messages once `stopping()` says the process is stopping.
    """
    if not channels:
        return []
    max_attempts = settings.ALERT_MAX_ATTEMPTS * ROUNDS
    takeover = retry_after(settings)
    due = db.alerts_due(
        after=timedelta(minutes=settings.ALERT_AFTER_MINUTES),
        channels=[c.name for c in channels],
        retry_after=takeover,
        max_attempts=max_attempts,
    )
    if not due:
        return []
    # Built before any claim: a message that cannot be built must not leave a claimed row behind.
    messages = [(incident, event, message_for(incident, event, settings)) for incident, event in due]

    def run_channel(channel: Channel) -> list[Delivered]:
        done = []
        for incident, event, message in messages:
            if stopping():
                break
            claim = db.claim_delivery(
                incident.id, event, channel.name, worker_id, retry_after=takeover, max_attempts=max_attempts
            )
            if claim is None:
                continue  # another process sends it, or this channel is not owed this message
            outcome = DeliveryOutcome(ok=False, attempts=0, error="not sent: the sender stopped")
            try:
                extra = {"sleep": sleep} if sleep is not None else {}
                outcome = send_with_retries(
                    channel,
                    message,
                    attempts=settings.ALERT_MAX_ATTEMPTS,
                    backoff_seconds=settings.ALERT_BACKOFF_SECONDS,
                    **extra,
                )
            finally:  # recorded whatever happened, so the row never stays `sending` for nothing
                db.finish_delivery(
                    claim,
                    sent=outcome.ok,
                    attempts=outcome.attempts,
                    error=outcome.error,
                    worker_id=worker_id,
                    give_up=max_attempts if outcome.permanent else None,
                )
            if outcome.ok:
                logger.info("alert %s #%s sent to %s", event, incident.id, channel.name)
            else:
                logger.warning(
                    "alert %s #%s to %s failed: %s", event, incident.id, channel.name, outcome.error
                )
            done.append(
                Delivered(incident.id, event, channel.name, outcome.ok, outcome.attempts, outcome.error)
            )
        return done

    with ThreadPoolExecutor(max_workers=len(channels), thread_name_prefix="alert") as pool:
        return [d for batch in pool.map(run_channel, channels) for d in batch]


def send_test(settings: Settings) -> list[TestDelivery]:
    """Send a test message to every configured channel (`crypto-pipeline alerts test`); nothing is stored."""
    message = make_test_message(settings.DASHBOARD_URL, now=utcnow())
    results = []
    for channel in configured_channels(settings):
        outcome = send_with_retries(
            channel,
            message,
            attempts=settings.ALERT_MAX_ATTEMPTS,
            backoff_seconds=settings.ALERT_BACKOFF_SECONDS,
        )
        results.append(TestDelivery(channel.name, outcome.ok, outcome.attempts, outcome.error))
    return results
