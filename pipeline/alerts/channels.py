"""Where alerts go: a generic JSON webhook, a Slack incoming webhook, e-mail over SMTP.

Each channel is built from settings by :func:`configured_channels` (one per configured setting, in the
order webhook, slack, email) and delivers one :class:`~pipeline.alerts.message.AlertMessage` with
``send(msg)``, raising :class:`~pipeline.errors.AlertDeliveryError` when it cannot.
:func:`send_with_retries` wraps one delivery in retries with exponential backoff and never raises for a
delivery failure: it returns a :class:`DeliveryOutcome` whose error text is redacted.

- webhook: ``POST`` of :func:`~pipeline.alerts.message.webhook_body` as JSON; any 2xx is delivered.
  Redirects are not followed (a 3xx is a failure): requests would replay the POST as a GET elsewhere.
- slack: ``POST {"text": ...}`` (title, summary, link) to an incoming webhook (or a compatible one:
  Mattermost, Rocket.Chat); any 2xx is delivered.
- email: ``smtp://[user:password@]host[:port]`` (port 25 by default; STARTTLS whenever the server offers
  it) or ``smtps://[user:password@]host[:port]`` (implicit TLS, port 465 by default). A user name and
  password are sent only over TLS, or in clear to a server on this machine (loopback).

The URLs are secrets (a webhook URL is its own token, the SMTP URL holds a password): a channel's repr and
every error text it produces have them masked, in every form in which requests, urllib3 or smtplib may
quote them (the whole URL, its path and query, the password, ``user:password``), together with every
value of ``settings.secrets()``.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import smtplib
import ssl
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import cache
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

import requests
from pydantic import SecretStr
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from pipeline.alerts.message import AlertMessage, text_body, title, webhook_body
from pipeline.config import Settings, mask_url_password
from pipeline.errors import AlertDeliveryError, ConfigError, truncate
from pipeline.http.redact import mask_secrets, secret_forms

__all__ = [
    "BACKOFF_MAX_SECONDS",
    "Channel",
    "DeliveryOutcome",
    "EmailChannel",
    "SlackChannel",
    "WebhookChannel",
    "configured_channels",
    "send_with_retries",
    "slack_text",
    "url_secret_forms",
]

logger = logging.getLogger(__name__)

# One wait between attempts never exceeds this: an alert that arrives many minutes late has lost its point,
# and the sender (a watcher loop) has other incidents to report.
BACKOFF_MAX_SECONDS = 60.0
# Enough of a refusal's body to say why (Slack answers "invalid_token", "no_service"), not a whole page.
_BODY_SNIPPET_BYTES = 300
_USER_AGENT = "crypto-pipeline-alerts"
# Statuses after which the same request may succeed later; any other 4xx is a mistake in the setting.
_RETRIABLE_4XX = frozenset({408, 425, 429})
# A path segment or query value this long is taken for a token even when quoted on its own.
_TOKEN_MIN_CHARS = 16
_ERRNO = re.compile(r"\[Errno -?\d+\][^\"')]*")


# -- redaction


def url_secret_forms(url: str) -> tuple[str, ...]:
    """Every spelling of the parts of `url` that may carry its token, longest first.

    requests and urllib3 quote a failed request's URL in pieces (``... with url: /services/T0/B0/XXX``),
    so masking the whole URL is not enough: its path with the query, the query, long path segments and
    query values, the password and ``user:password`` are masked too, raw and URL-encoded.
    """
    parts = urlsplit(url)
    pieces = {url, url.rstrip("/")}
    if parts.password:
        userinfo = parts.netloc.rpartition("@")[0]
        pieces |= {parts.password, unquote(parts.password), userinfo, unquote(userinfo)}
    if len(parts.path) > 1:  # "/" alone is in every URL and says nothing
        pieces |= {parts.path, parts.path + (f"?{parts.query}" if parts.query else "")}
        pieces |= {segment for segment in parts.path.split("/") if len(segment) >= _TOKEN_MIN_CHARS}
    if parts.query:
        pieces.add(parts.query)
        pieces |= {value for _, value in parse_qsl(parts.query) if len(value) >= _TOKEN_MIN_CHARS}
    forms: set[str] = set()
    for piece in pieces:
        forms.update(secret_forms(piece))
    return tuple(sorted(forms, key=len, reverse=True))


class _MaskForms(logging.Filter):
    """Mask the registered URL pieces in urllib3's own DEBUG lines (``"POST /services/T0/B0/XXX" 500``),
    which quote the request path before any of our code sees it."""

    def __init__(self) -> None:
        super().__init__()
        self._forms: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, forms: Iterable[str]) -> None:
        """Remember more forms to mask (longest first, so a longer one is masked whole)."""
        with self._lock:
            self._forms = tuple(sorted(set(self._forms) | set(forms), key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with the forms masked; never drops a record."""
        forms = self._forms
        if forms:
            message = record.getMessage()
            cleaned = mask_secrets(message, forms)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


@cache
def _urllib3_filter() -> _MaskForms:
    """The one filter on urllib3's connection-pool logger (installed once per process)."""
    mask = _MaskForms()
    logging.getLogger("urllib3.connectionpool").addFilter(mask)
    return mask


# -- channels


class Channel(ABC):
    """One way to deliver alerts. `send` delivers one message or raises AlertDeliveryError (redacted)."""

    name: ClassVar[str]
    # The setting the channel is built from, for configuration errors.
    setting: ClassVar[str]

    def __init__(self, *, timeout: float, secrets: Iterable[str] = ()) -> None:
        if timeout <= 0:
            msg = f"{self.setting}: the timeout must be positive, got {timeout}"
            raise ConfigError(msg)
        self.timeout = timeout
        self._forms: tuple[str, ...] = ()
        self._add_secrets(secret for value in secrets for secret in secret_forms(value))

    def _add_secrets(self, forms: Iterable[str]) -> None:
        self._forms = tuple(sorted(set(self._forms) | set(forms), key=len, reverse=True))

    @abstractmethod
    def send(self, msg: AlertMessage) -> None:
        """Deliver `msg` once; raise AlertDeliveryError (with a redacted text) when it was not delivered."""

    def redact(self, text: str) -> str:
        """`text` with this channel's URL pieces, every configured secret and any URL password masked."""
        return mask_url_password(mask_secrets(text, self._forms))

    def _failure(self, detail: str, *, retriable: bool = True) -> AlertDeliveryError:
        return AlertDeliveryError(truncate(self.redact(f"{self.name}: {detail}")), retriable=retriable)

    def __repr__(self) -> str:
        # Never the URL: a repr ends up in logs and tracebacks.
        return f"{type(self).__name__}()"


def _connection_reason(exc: BaseException) -> str:
    """The useful end of a requests connection error (``[Errno 111] Connection refused``), not urllib3's
    whole chain of wrappers with object reprs and the request path."""
    found = _ERRNO.search(str(exc))
    if found:
        return found.group(0).strip()
    return f"{type(exc).__name__}: {exc}"


class _HttpChannel(Channel):
    """A channel that POSTs JSON to a URL it keeps secret."""

    def __init__(self, url: str, *, timeout: float, secrets: Iterable[str] = ()) -> None:
        super().__init__(timeout=timeout, secrets=secrets)
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The value is not shown: it is a secret, and a typo in it may still hold the token.
            msg = f"{self.setting} must be an http(s) URL such as https://host/path (value not shown: secret)"
            raise ConfigError(msg)
        try:
            port = parts.port
        except ValueError:
            msg = f"{self.setting}: the port is not a number (value not shown: secret)"
            raise ConfigError(msg) from None
        self._url = url.strip()
        # Named by host and port only, which carry no token.
        self._where = f"{parts.hostname}:{port or (443 if parts.scheme == 'https' else 80)}"
        forms = url_secret_forms(self._url)
        self._add_secrets(forms)
        _urllib3_filter().add(forms)

    def _post(self, body: dict[str, Any]) -> None:
        try:
            # stream=True: only a short snippet of a refusal's body is read, never a whole page.
            response = requests.post(
                self._url,
                json=body,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
                headers={"User-Agent": _USER_AGENT},
            )
        except requests.Timeout:
            raise self._failure(f"no reply from {self._where} within {self.timeout:g} s") from None
        except requests.ConnectionError as exc:
            raise self._failure(f"cannot connect to {self._where}: {_connection_reason(exc)}") from None
        except requests.RequestException as exc:
            raise self._failure(f"{type(exc).__name__}: {exc}") from None
        with response:
            status = response.status_code
            if 200 <= status < 300:
                return
            try:
                snippet = response.raw.read(_BODY_SNIPPET_BYTES, decode_content=True) or b""
            except Exception:  # the status says enough; a broken body must not hide it
                snippet = b""
        text = " ".join(snippet.decode("utf-8", "replace").split())
        retriable = status >= 500 or status in _RETRIABLE_4XX or status < 400
        detail = f"HTTP {status} from {self._where}" + (f": {text}" if text else "")
        raise self._failure(detail, retriable=retriable)


class WebhookChannel(_HttpChannel):
    """POST the documented JSON body (pipeline.alerts.message) to ALERT_WEBHOOK_URL."""

    name = "webhook"
    setting = "ALERT_WEBHOOK_URL"

    def send(self, msg: AlertMessage) -> None:
        """Deliver `msg` as the JSON webhook body; any 2xx reply means delivered."""
        self._post(webhook_body(msg))


def _slack_escape(text: str) -> str:
    # Slack reads <...> as links and mentions (<!channel> would page a whole channel): escape our text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(msg: AlertMessage) -> str:
    """The Slack message: the title in bold, the summary, and a link to the incident on the dashboard."""
    lines = [f"*{_slack_escape(title(msg))}*"]
    if msg.status != "test":
        lines.append(_slack_escape(msg.summary))
    lines.append(f"<{msg.url}|Open in the dashboard>")
    return "\n".join(lines)


class SlackChannel(_HttpChannel):
    """POST ``{"text": ...}`` to a Slack incoming webhook (ALERT_SLACK_WEBHOOK_URL)."""

    name = "slack"
    setting = "ALERT_SLACK_WEBHOOK_URL"

    def send(self, msg: AlertMessage) -> None:
        """Deliver `msg` as a Slack text message; any 2xx reply (Slack says "ok") means delivered."""
        self._post({"text": slack_text(msg)})


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmailChannel(Channel):
    """Send `msg` as a plain-text e-mail over SMTP (ALERT_SMTP_URL) to ALERT_EMAIL_TO."""

    name = "email"
    setting = "ALERT_SMTP_URL"

    def __init__(
        self,
        smtp_url: str,
        *,
        sender: str,
        recipients: Sequence[str],
        timeout: float,
        secrets: Iterable[str] = (),
    ) -> None:
        super().__init__(timeout=timeout, secrets=secrets)
        parts = urlsplit(smtp_url.strip())
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps") or not parts.hostname:
            msg = (
                "ALERT_SMTP_URL must be smtp://[user:password@]host[:port] (STARTTLS when offered) or"
                " smtps://[user:password@]host[:port] (implicit TLS) (value not shown: secret)"
            )
            raise ConfigError(msg)
        try:
            port = parts.port
        except ValueError:
            msg = "ALERT_SMTP_URL: the port is not a number (value not shown: secret)"
            raise ConfigError(msg) from None
        if not recipients:
            msg = "ALERT_SMTP_URL is set but ALERT_EMAIL_TO is empty: list the addresses to send alerts to"
            raise ConfigError(msg)
        self._implicit_tls = scheme == "smtps"
        self._host = parts.hostname
        self._port = port or (465 if self._implicit_tls else 25)
        # Percent-decoded: a password holding @ or : has to be written %40 or %3A in the URL.
        self._user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else ""
        self.sender = sender
        self.recipients = list(recipients)
        self._add_secrets(url_secret_forms(smtp_url.strip()))
        if self._password:
            self._add_secrets(secret_forms(self._password))
            self._add_secrets(secret_forms(f"{self._user}:{self._password}"))

    def build(self, msg: AlertMessage) -> EmailMessage:
        """The e-mail for `msg`: the title as subject, the plain-text body with every field and the link."""
        email = EmailMessage()
        email["Subject"] = title(msg)
        email["From"] = self.sender
        email["To"] = ", ".join(self.recipients)
        email["Date"] = formatdate(usegmt=True)
        # An explicit domain: make_msgid's default asks DNS for this host's name, which can hang.
        email["Message-ID"] = make_msgid(domain="crypto-pipeline")
        email.set_content(text_body(msg))
        return email

    def send(self, msg: AlertMessage) -> None:
        """Deliver `msg` through the SMTP server; raise AlertDeliveryError when it refuses or is away."""
        email = self.build(msg)
        where = f"{self._host}:{self._port}"
        try:
            self._deliver(email)
        except AlertDeliveryError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(sorted(exc.recipients))
            raise self._failure(f"{where} refused every recipient ({refused})", retriable=False) from None
        except smtplib.SMTPResponseException as exc:
            # 5xx is a permanent refusal (bad credentials, sender not allowed); 4xx asks to try later.
            reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else ""
            raise self._failure(
                f"{where} answered {exc.smtp_code} {' '.join(reply.split())}".rstrip(),
                retriable=not 500 <= exc.smtp_code < 600,
            ) from None
        except TimeoutError:
            raise self._failure(f"no reply from {where} within {self.timeout:g} s") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise self._failure(f"{where}: {type(exc).__name__}: {exc}") from None

    def _deliver(self, email: EmailMessage) -> None:
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self._implicit_tls:
            smtp = smtplib.SMTP_SSL(self._host, self._port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self._host, self._port, timeout=self.timeout)
        with smtp:
            smtp.ehlo()
            encrypted = self._implicit_tls
            if not encrypted and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
                encrypted = True
            if self._user is not None:
                if not encrypted and not _is_loopback(self._host):
                    msg = (
                        f"{self._host}:{self._port} offers no STARTTLS; the SMTP password is not sent in"
                        " clear: use smtps:// or a server with STARTTLS"
                    )
                    raise self._failure(msg, retriable=False)
                smtp.login(self._user, self._password)
            refused = smtp.send_message(email)
        if refused:
            # Delivered to the others: retrying would send them a duplicate, so this is only logged.
            logger.warning("alert e-mail refused for %s", ", ".join(sorted(refused)))


def _value(secret: SecretStr | None) -> str:
    """The secret's text, "" when unset (a blank value counts as unset)."""
    return "" if secret is None else secret.get_secret_value().strip()


def configured_channels(settings: Settings) -> list[Channel]:
    """One channel per configured setting, in the order webhook, slack, email; [] when none is set.

    Raises ConfigError naming the setting when one is unusable (not an http(s) URL, not an smtp(s) URL,
    or ALERT_SMTP_URL without ALERT_EMAIL_TO).
    """
    secrets = settings.secrets()
    timeout = settings.ALERT_TIMEOUT_SECONDS
    channels: list[Channel] = []
    if webhook_url := _value(settings.ALERT_WEBHOOK_URL):
        channels.append(WebhookChannel(webhook_url, timeout=timeout, secrets=secrets))
    if slack_url := _value(settings.ALERT_SLACK_WEBHOOK_URL):
        channels.append(SlackChannel(slack_url, timeout=timeout, secrets=secrets))
    if smtp_url := _value(settings.ALERT_SMTP_URL):
        channels.append(
            EmailChannel(
                smtp_url,
                sender=settings.ALERT_EMAIL_FROM,
                recipients=settings.ALERT_EMAIL_TO,
                timeout=timeout,
                secrets=secrets,
            )
        )
    return channels


# -- delivery with retries


@dataclass(frozen=True)
class DeliveryOutcome:
    """How one delivery ended: `ok`, after how many `attempts`, and the last error (redacted) if not ok."""

    ok: bool
    attempts: int
    error: str | None
    # The channel refused for good (a 404, bad credentials): trying again later would not help either.
    permanent: bool = False


def _is_retriable(exc: BaseException) -> bool:
    return isinstance(exc, AlertDeliveryError) and exc.retriable


def send_with_retries(
    channel: Channel,
    msg: AlertMessage,
    *,
    attempts: int,
    backoff_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryOutcome:
    """Send `msg` through `channel`, up to `attempts` times, waiting backoff_seconds, then twice that, ...
    (at most BACKOFF_MAX_SECONDS) between attempts; never raises for a failed delivery.

    A failure the channel marks as permanent (a 404, refused credentials) stops at once. `sleep` is the
    wait between attempts: a long-lived caller passes one that returns early when it is asked to stop.
    The outcome's error text is redacted by the channel (no URL token, no password, no secret).
    """
    if attempts < 1:
        msg_text = f"attempts must be at least 1, got {attempts}"
        raise ValueError(msg_text)

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "alert %s via %s failed (attempt %d of %d), retrying in %.1f s: %s",
            msg.status,
            channel.name,
            state.attempt_number,
            attempts,
            wait,
            channel.redact(str(error)),
        )

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=backoff_seconds, max=BACKOFF_MAX_SECONDS),
        retry=retry_if_exception(_is_retriable),
        sleep=sleep,
        before_sleep=log_retry,
        reraise=True,
    )
    error: str
    permanent = False
    try:
        retrying(channel.send, msg)
    except AlertDeliveryError as exc:
        error = str(exc)
        permanent = not exc.retriable
    except Exception as exc:
        # A bug or an error no channel anticipated: alerting must not take its caller (a watcher loop)
        # down with it, so this is a failed outcome too, not retried. No traceback in the log: its
        # messages were not written with redaction in mind.
        error = f"{channel.name}: {type(exc).__name__}: {exc}"
        logger.error("alert via %s failed unexpectedly: %s", channel.name, channel.redact(error))
    else:
        return DeliveryOutcome(ok=True, attempts=_attempts_made(retrying), error=None)
    return DeliveryOutcome(
        ok=False,
        attempts=_attempts_made(retrying),
        error=truncate(channel.redact(error)),
        permanent=permanent,
    )


def _attempts_made(retrying: Retrying) -> int:
    return int(retrying.statistics.get("attempt_number", 1))
