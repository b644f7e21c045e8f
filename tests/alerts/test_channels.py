"""The alert channels against real receivers on 127.0.0.1: an HTTP server in a thread (webhook, Slack)
and an aiosmtpd SMTP server (e-mail). Nothing of requests or smtplib is mocked."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from pipeline.alerts import (
    AlertMessage,
    EmailChannel,
    SlackChannel,
    WebhookChannel,
    configured_channels,
    incident_url,
    make_test_message,
    send_with_retries,
    title,
    webhook_body,
)
from pipeline.alerts.channels import url_secret_forms
from pipeline.alerts.message import format_duration, text_body
from pipeline.errors import AlertDeliveryError, ConfigError
from tests.support.settings import make_settings

TOKEN = "XXXXsecretWEBHOOKtoken1234"
TOKEN_PATH = f"/services/T000/B000/{TOKEN}"
SMTP_USER = "alerts"
SMTP_PASSWORD = "s3cret-SMTP-pass"
DASHBOARD = "http://dash.example:8501"
OPENED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
BODY_KEYS = {
    "version",
    "incident_id",
    "kind",
    "key",
    "unit",
    "status",
    "level",
    "summary",
    "opened_at",
    "resolved_at",
    "duration_seconds",
    "url",
}


def firing(**changes: Any) -> AlertMessage:
    values: dict[str, Any] = {
        "incident_id": 42,
        "kind": "unit",
        "key": "blockchair/blocks/bitcoin",
        "unit": "blockchair blocks bitcoin",
        "status": "firing",
        "level": "error",
        "summary": "RetriableSourceError: blockchair blocks: HTTP 503: Service Unavailable",
        "opened_at": OPENED,
        "resolved_at": None,
        "url": incident_url(DASHBOARD, 42),
    }
    values.update(changes)
    return AlertMessage(**values)


def resolved() -> AlertMessage:
    return firing(status="resolved", resolved_at=OPENED + timedelta(minutes=12, seconds=5))


def settings(**overrides: object) -> Any:
    values: dict[str, object] = {"ALERT_BACKOFF_SECONDS": 0.01, "ALERT_TIMEOUT_SECONDS": 2}
    values.update(overrides)
    return make_settings("sqlite://", **values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- an HTTP receiver


class Receiver(ThreadingHTTPServer):
    """Answers POSTs with the next status of `statuses` (the last one repeats), recording each body;
    with `hang`, never answers until the test ends."""

    def __init__(self, statuses: list[int], *, hang: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.statuses = list(statuses)
        self.hang = hang
        self.bodies: list[Any] = []
        self.paths: list[str] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{TOKEN_PATH}"

    def next_status(self) -> int:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        self.server.paths.append(self.path)
        self.server.bodies.append(json.loads(raw))
        if self.server.hang:
            self.server.release.wait(10)
            return
        status = self.server.next_status()
        # A refusal echoes the request path, as some proxies do: the channel must mask the token in it.
        reply = b"ok" if status < 300 else f"error at {self.path}".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    started: list[Receiver] = []

    def start(statuses: list[int], *, hang: bool = False) -> Receiver:
        server = Receiver(statuses, hang=hang)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.release.set()
        server.shutdown()
        server.server_close()


# -- an SMTP receiver


class Collector:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        return [
            message_from_bytes(e.content, policy=default_policy)  # type: ignore[arg-type]
            for e in self.envelopes
        ]


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest) -> Iterator[tuple[Collector, int]]:
    """An aiosmtpd server on 127.0.0.1; with the `auth` param, AUTH is required (allowed without TLS on
    loopback, as the channel is)."""
    collector = Collector()
    port = free_port()
    extra: dict[str, Any] = {}
    if getattr(request, "param", None) == "auth":
        extra = {"authenticator": _authenticator, "auth_required": True, "auth_require_tls": False}
    controller = Controller(
        collector, hostname="127.0.0.1", port=port, server_hostname="smtp.test", ready_timeout=5, **extra
    )
    controller.start()
    try:
        yield collector, port
    finally:
        controller.stop()


# -- the message


def test_the_webhook_body_has_the_documented_shape():
    body = webhook_body(firing())
    assert set(body) == BODY_KEYS
    assert body == {
        "version": 1,
        "incident_id": 42,
        "kind": "unit",
        "key": "blockchair/blocks/bitcoin",
        "unit": "blockchair blocks bitcoin",
        "status": "firing",
        "level": "error",
        "summary": "RetriableSourceError: blockchair blocks: HTTP 503: Service Unavailable",
        "opened_at": "2024-05-01T12:00:00Z",
        "resolved_at": None,
        "duration_seconds": None,
        "url": "http://dash.example:8501/incidents?incident=42",
    }
    closed = webhook_body(resolved())
    assert closed["status"] == "resolved"
    assert closed["resolved_at"] == "2024-05-01T12:12:05Z"
    assert closed["duration_seconds"] == 725
    json.dumps(closed)  # plain JSON types only


def test_times_are_utc_and_naive_times_are_refused():
    plus_two = timezone(timedelta(hours=2))
    msg = firing(opened_at=datetime(2024, 5, 1, 14, 0, tzinfo=plus_two))
    assert msg.opened_at == OPENED
    assert webhook_body(msg)["opened_at"] == "2024-05-01T12:00:00Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        firing(opened_at=datetime(2024, 5, 1, 12, 0))


def test_titles_are_one_line():
    assert title(firing()) == (
        "[FIRING] blockchair blocks bitcoin: RetriableSourceError: blockchair blocks: HTTP 503: "
        "Service Unavailable"
    )
    assert title(resolved()) == "[RESOLVED] blockchair blocks bitcoin after 12 min"
    assert title(firing(unit=None, summary="line one\nBcc: victim@example.com")) == (
        "[FIRING] blockchair/blocks/bitcoin: line one Bcc: victim@example.com"
    )
    assert len(title(firing(summary="x" * 1000))) <= 200
    test = make_test_message(DASHBOARD, now=OPENED)
    assert title(test).startswith("[TEST] ")
    assert test.incident_id is None
    assert webhook_body(test)["url"] == "http://dash.example:8501/incidents"
    assert [format_duration(s) for s in (45, 720, 3600, 3900, 86400 + 7200)] == [
        "45 s",
        "12 min",
        "1 h",
        "1 h 5 min",
        "1 d 2 h",
    ]


def test_the_dashboard_link_never_carries_a_password():
    assert (
        incident_url("https://ops:hunter2@dash.example/", 7)
        == "https://ops:***@dash.example/incidents?incident=7"
    )


# -- webhook and Slack


def test_the_webhook_posts_the_documented_body(receiver_factory):
    receiver = receiver_factory([200])
    channel = WebhookChannel(receiver.url, timeout=2)
    channel.send(firing())
    channel.send(resolved())
    assert receiver.paths == [TOKEN_PATH, TOKEN_PATH]
    opened, closed = receiver.bodies
    assert opened == webhook_body(firing())
    assert closed == webhook_body(resolved())
    for body in (opened, closed):
        assert set(body) == BODY_KEYS
        assert ISO_Z.match(body["opened_at"])
    assert (opened["status"], closed["status"]) == ("firing", "resolved")
    assert ISO_Z.match(closed["resolved_at"])
    assert TOKEN not in repr(channel)


def test_slack_gets_the_title_and_the_link(receiver_factory):
    receiver = receiver_factory([200])
    SlackChannel(receiver.url, timeout=2).send(firing(summary="boom <!channel> & more"))
    (body,) = receiver.bodies
    assert set(body) == {"text"}
    text = body["text"]
    assert "[FIRING] blockchair blocks bitcoin" in text
    assert "<http://dash.example:8501/incidents?incident=42|" in text
    # Our text is escaped: a summary cannot @-mention a whole channel.
    assert "<!channel>" not in text
    assert "&lt;!channel&gt; &amp; more" in text


def test_a_retried_delivery_ends_ok_on_the_third_attempt(receiver_factory):
    receiver = receiver_factory([500, 500, 200])
    config = settings(ALERT_WEBHOOK_URL=receiver.url)
    (channel,) = configured_channels(config)
    outcome = send_with_retries(
        channel, firing(), attempts=config.ALERT_MAX_ATTEMPTS, backoff_seconds=config.ALERT_BACKOFF_SECONDS
    )
    assert (outcome.ok, outcome.attempts, outcome.error) == (True, 3, None)
    assert len(receiver.bodies) == 3


def test_a_failing_receiver_gives_up_after_the_attempts_without_the_token(receiver_factory, caplog):
    caplog.set_level(logging.DEBUG)
    receiver = receiver_factory([500])
    config = settings(ALERT_SLACK_WEBHOOK_URL=receiver.url, ALERT_MAX_ATTEMPTS=4)
    (channel,) = configured_channels(config)
    outcome = send_with_retries(
        channel, firing(), attempts=config.ALERT_MAX_ATTEMPTS, backoff_seconds=config.ALERT_BACKOFF_SECONDS
    )
    assert not outcome.ok
    assert outcome.attempts == config.ALERT_MAX_ATTEMPTS == 4
    assert outcome.error is not None
    assert "HTTP 500" in outcome.error
    assert "error at ***" in outcome.error  # the echoed path is masked, the rest of the reply kept
    for text in (outcome.error, caplog.text):
        assert TOKEN not in text
        assert TOKEN_PATH not in text
        assert receiver.url not in text


def test_a_permanent_refusal_is_not_retried(receiver_factory):
    receiver = receiver_factory([404])
    channel = WebhookChannel(receiver.url, timeout=2)
    outcome = send_with_retries(channel, firing(), attempts=5, backoff_seconds=0.01)
    assert (outcome.ok, outcome.attempts) == (False, 1)
    assert outcome.error is not None
    assert "HTTP 404" in outcome.error
    assert TOKEN not in outcome.error


def test_nothing_listening_fails_cleanly_and_quickly(caplog):
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{free_port()}{TOKEN_PATH}"
    config = settings(ALERT_WEBHOOK_URL=url, ALERT_MAX_ATTEMPTS=3)
    (channel,) = configured_channels(config)
    started = time.monotonic()
    outcome = send_with_retries(channel, firing(), attempts=3, backoff_seconds=0.01)
    assert time.monotonic() - started < 2
    assert (outcome.ok, outcome.attempts) == (False, 3)
    assert outcome.error is not None
    assert "cannot connect to 127.0.0.1" in outcome.error
    for text in (outcome.error, caplog.text):
        assert TOKEN not in text
    with pytest.raises(AlertDeliveryError) as raised:
        channel.send(firing())
    # Raised `from None`: no chained requests error (whose text quotes the URL) rides along.
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_a_receiver_that_never_answers_is_cut_by_the_timeout(receiver_factory):
    receiver = receiver_factory([200], hang=True)
    config = settings(ALERT_WEBHOOK_URL=receiver.url, ALERT_TIMEOUT_SECONDS=0.5)
    (channel,) = configured_channels(config)
    started = time.monotonic()
    outcome = send_with_retries(channel, firing(), attempts=1, backoff_seconds=0)
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 2
    assert (outcome.ok, outcome.attempts) == (False, 1)
    assert outcome.error is not None
    assert "within 0.5 s" in outcome.error
    assert TOKEN not in outcome.error


def test_secret_url_pieces_are_all_masked():
    forms = url_secret_forms(f"https://hooks.slack.com{TOKEN_PATH}")
    assert TOKEN_PATH in forms
    assert TOKEN in forms
    assert "/" not in forms


# -- e-mail


def test_an_email_arrives_with_subject_recipients_and_link(smtp_server):
    collector, port = smtp_server
    config = settings(
        ALERT_SMTP_URL=f"smtp://127.0.0.1:{port}",
        ALERT_EMAIL_TO="ops@example.com, oncall@example.com",
        ALERT_EMAIL_FROM="pipeline@example.com",
    )
    (channel,) = configured_channels(config)
    outcome = send_with_retries(channel, resolved(), attempts=2, backoff_seconds=0.01)
    assert (outcome.ok, outcome.attempts) == (True, 1)
    (envelope,) = collector.envelopes
    assert envelope.rcpt_tos == ["ops@example.com", "oncall@example.com"]
    assert envelope.mail_from == "pipeline@example.com"
    (mail,) = collector.messages()
    assert mail["Subject"] == title(resolved()) == "[RESOLVED] blockchair blocks bitcoin after 12 min"
    assert mail["To"] == "ops@example.com, oncall@example.com"
    assert mail["From"] == "pipeline@example.com"
    body = mail.get_content()
    assert "http://dash.example:8501/incidents?incident=42" in body
    assert body.replace("\r\n", "\n") == text_body(resolved())


@pytest.mark.parametrize("smtp_server", ["auth"], indirect=True)
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_an_email_logs_in_when_the_server_requires_it(smtp_server):
    collector, port = smtp_server
    good = EmailChannel(
        f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{port}",
        sender="pipeline@example.com",
        recipients=["ops@example.com"],
        timeout=2,
    )
    assert send_with_retries(good, firing(), attempts=1, backoff_seconds=0).ok
    assert len(collector.envelopes) == 1

    bad = EmailChannel(
        f"smtp://{SMTP_USER}:wrong-{SMTP_PASSWORD}@127.0.0.1:{port}",
        sender="pipeline@example.com",
        recipients=["ops@example.com"],
        timeout=2,
    )
    outcome = send_with_retries(bad, firing(), attempts=3, backoff_seconds=0.01)
    assert (outcome.ok, outcome.attempts) == (False, 1)  # 535: refused credentials are not retried
    assert outcome.error is not None
    assert "535" in outcome.error
    assert SMTP_PASSWORD not in outcome.error

    anonymous = EmailChannel(
        f"smtp://127.0.0.1:{port}", sender="pipeline@example.com", recipients=["ops@example.com"], timeout=2
    )
    refused = send_with_retries(anonymous, firing(), attempts=1, backoff_seconds=0)
    assert not refused.ok
    assert len(collector.envelopes) == 1


def test_an_smtp_server_that_is_down_never_shows_the_password(caplog):
    caplog.set_level(logging.DEBUG)
    url = f"smtps://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{free_port()}"
    config = settings(ALERT_SMTP_URL=url, ALERT_EMAIL_TO="ops@example.com")
    (channel,) = configured_channels(config)
    started = time.monotonic()
    outcome = send_with_retries(channel, firing(), attempts=2, backoff_seconds=0.01)
    assert time.monotonic() - started < 2
    assert (outcome.ok, outcome.attempts) == (False, 2)
    assert outcome.error is not None
    assert "Connection refused" in outcome.error
    for text in (outcome.error, caplog.text, repr(channel)):
        assert SMTP_PASSWORD not in text
        assert f"{SMTP_USER}:{SMTP_PASSWORD}" not in text


# -- configuration


def test_no_channel_is_configured_by_default():
    assert configured_channels(settings()) == []


def test_every_configured_channel_in_order():
    config = settings(
        ALERT_SMTP_URL="smtps://u:p@mail.example:465",
        ALERT_EMAIL_TO="ops@example.com",
        ALERT_SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T000/B000/XXXX",
        ALERT_WEBHOOK_URL="https://alerts.example/hook",
    )
    channels = configured_channels(config)
    assert [c.name for c in channels] == ["webhook", "slack", "email"]
    assert [type(c) for c in channels] == [WebhookChannel, SlackChannel, EmailChannel]
    assert all(c.timeout == config.ALERT_TIMEOUT_SECONDS for c in channels)


def test_smtp_without_recipients_is_a_config_error_naming_the_setting():
    with pytest.raises(ConfigError, match="ALERT_EMAIL_TO"):
        configured_channels(settings(ALERT_SMTP_URL="smtp://u:p@mail.example"))


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("ALERT_WEBHOOK_URL", f"ftp://hooks.example{TOKEN_PATH}"),
        ("ALERT_SLACK_WEBHOOK_URL", f"hooks.slack.com{TOKEN_PATH}"),
        ("ALERT_SMTP_URL", f"http://u:{SMTP_PASSWORD}@mail.example"),
    ],
)
def test_an_unusable_url_is_a_config_error_that_does_not_show_it(setting, value):
    with pytest.raises(ConfigError, match=setting) as raised:
        configured_channels(settings(**{setting: value, "ALERT_EMAIL_TO": "ops@example.com"}))
    assert TOKEN not in str(raised.value)
    assert SMTP_PASSWORD not in str(raised.value)
