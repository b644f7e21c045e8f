"""What an alert says: one `AlertMessage` per incident change, and the texts every channel builds from it.

The webhook channel POSTs :func:`webhook_body` as JSON (``Content-Type: application/json``, UTF-8)::

    {
      "version": 1,                          # bumped only on an incompatible change of this shape
      "incident_id": 42,                     # null for a test message
      "kind": "unit",                        # unit | freshness | quality | scheduler | quota | test
      "key": "blockchair/blocks/bitcoin",    # stable identity of what the incident is about
      "unit": "blockchair blocks bitcoin",   # human name of the unit, or null
      "status": "firing",                    # firing | resolved | test
      "level": "error",                      # error | warning
      "summary": "RetriableSourceError: blockchair blocks: HTTP 503: ...",
      "opened_at": "2024-05-01T12:00:00Z",   # ISO 8601, UTC, whole seconds, always with Z
      "resolved_at": null,                   # same format once resolved, else null
      "duration_seconds": null,              # resolved_at - opened_at in whole seconds, else null
      "url": "http://127.0.0.1:8501/incidents?incident=42"   # the incident on the dashboard
    }

Every key is always present. A message never holds a secret: the summary comes from the database, where
errors are stored redacted, and the only URL we add is the dashboard link (DASHBOARD_URL, with any
password in it masked).

The one-line title (e-mail subject, first line on Slack) is ``[FIRING] <unit or key>: <summary>``,
``[RESOLVED] <unit or key> after 12 min`` or ``[TEST] <summary>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pipeline.errors import truncate
from pipeline.http.redact import safe_url

__all__ = [
    "WEBHOOK_BODY_VERSION",
    "AlertLevel",
    "AlertMessage",
    "AlertStatus",
    "format_duration",
    "incident_url",
    "iso_utc",
    "make_test_message",
    "text_body",
    "title",
    "webhook_body",
]

WEBHOOK_BODY_VERSION = 1
# A subject line stays readable in a mail client and a phone notification; the body carries the rest.
TITLE_MAX_CHARS = 200

AlertStatus = Literal["firing", "resolved", "test"]
AlertLevel = Literal["error", "warning"]

_WHITESPACE = re.compile(r"\s+")


def _aware_utc(value: datetime, name: str) -> datetime:
    """The time in UTC; a naive time is refused, since guessing its zone would shift every duration."""
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"AlertMessage.{name} must be timezone-aware (UTC), got naive {value.isoformat()}"
        raise ValueError(msg)
    return value.astimezone(UTC)


@dataclass(frozen=True)
class AlertMessage:
    """One alert about one incident: it opened (firing), it closed (resolved), or a test.

    Times are stored in UTC (an aware time in another zone is converted; a naive one is refused).
    """

    incident_id: int | None
    kind: str
    key: str
    unit: str | None
    status: AlertStatus
    level: AlertLevel
    summary: str
    opened_at: datetime
    resolved_at: datetime | None
    url: str

    def __post_init__(self) -> None:
        # Frozen: normalise through object.__setattr__, once, so every reader sees UTC.
        object.__setattr__(self, "opened_at", _aware_utc(self.opened_at, "opened_at"))
        if self.resolved_at is not None:
            object.__setattr__(self, "resolved_at", _aware_utc(self.resolved_at, "resolved_at"))

    @property
    def subject(self) -> str:
        """What the incident is about, for people: the unit's name, else its key."""
        return self.unit or self.key

    @property
    def duration_seconds(self) -> int | None:
        """How long the incident was open, in whole seconds, once resolved; else None."""
        if self.resolved_at is None:
            return None
        return max(0, int((self.resolved_at - self.opened_at).total_seconds()))


def iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with a Z and whole seconds (``2024-05-01T12:00:00Z``), the one form in alerts."""
    return _aware_utc(value, "time").strftime("%Y-%m-%dT%H:%M:%SZ")


def incident_url(dashboard_url: str, incident_id: int | None) -> str:
    """The dashboard page of an incident (the incidents page itself for a test message).

    A password in DASHBOARD_URL (``https://user:pass@host``) is masked: an alert travels through
    third-party services and mailboxes, and must not carry a credential.
    """
    base = safe_url(dashboard_url.strip()).rstrip("/")
    page = f"{base}/incidents"
    return page if incident_id is None else f"{page}?incident={incident_id}"


def make_test_message(dashboard_url: str, *, now: datetime | None = None) -> AlertMessage:
    """A message to check that the channels deliver (``crypto-pipeline`` test alerts); no incident."""
    at = now if now is not None else datetime.now(UTC)
    return AlertMessage(
        incident_id=None,
        kind="test",
        key="test",
        unit=None,
        status="test",
        level="warning",
        summary="Test alert from crypto-pipeline: this channel delivers.",
        opened_at=at,
        resolved_at=None,
        url=incident_url(dashboard_url, None),
    )


def format_duration(seconds: int) -> str:
    """A short human duration: ``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _one_line(text: str) -> str:
    # A title becomes an e-mail header: a newline in it would end the header (or inject another one).
    return _WHITESPACE.sub(" ", text).strip()


def title(msg: AlertMessage) -> str:
    """The one-line title: e-mail subject, first line of the Slack text."""
    if msg.status == "test":
        text = f"[TEST] {msg.summary}"
    elif msg.status == "resolved":
        after = msg.duration_seconds
        text = f"[RESOLVED] {msg.subject}" + (f" after {format_duration(after)}" if after is not None else "")
    else:
        text = f"[FIRING] {msg.subject}: {msg.summary}"
    return truncate(_one_line(text), TITLE_MAX_CHARS)


def webhook_body(msg: AlertMessage) -> dict[str, Any]:
    """The JSON body of the webhook channel, in the shape documented at the top of this module."""
    return {
        "version": WEBHOOK_BODY_VERSION,
        "incident_id": msg.incident_id,
        "kind": msg.kind,
        "key": msg.key,
        "unit": msg.unit,
        "status": msg.status,
        "level": msg.level,
        "summary": msg.summary,
        "opened_at": iso_utc(msg.opened_at),
        "resolved_at": None if msg.resolved_at is None else iso_utc(msg.resolved_at),
        "duration_seconds": msg.duration_seconds,
        "url": msg.url,
    }


def text_body(msg: AlertMessage) -> str:
    """The plain-text body (e-mail): the title, the summary, every field, and the link."""
    lines = [title(msg), "", msg.summary, ""]
    fields: list[tuple[str, object]] = [
        ("Status", msg.status),
        ("Level", msg.level),
        ("Kind", msg.kind),
        ("Key", msg.key),
        ("Unit", msg.unit or "-"),
        ("Incident", msg.incident_id if msg.incident_id is not None else "-"),
        ("Opened", iso_utc(msg.opened_at)),
    ]
    if msg.resolved_at is not None:
        fields.append(("Resolved", iso_utc(msg.resolved_at)))
    if msg.duration_seconds is not None:
        fields.append(("Duration", format_duration(msg.duration_seconds)))
    lines += [f"{name + ':':<10}{value}" for name, value in fields]
    lines += ["", f"Open in the dashboard: {msg.url}", ""]
    return "\n".join(lines)
