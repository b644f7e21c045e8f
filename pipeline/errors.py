"""One error hierarchy for the whole pipeline.

Callers catch by what they should do next, not by where the error came from::

    PipelineError
    ├── ConfigError                   bad settings; fix the configuration
    ├── SourceError                   an HTTP source failed (source, endpoint, status, api_code)
    │   ├── RetriableSourceError      429, 5xx, 408, timeouts, resets, Blockchair 402/435-437 (retry_after)
    │   │   ├── RateLimitedError      429 specifically
    │   │   └── DeadlineExceeded      no complete reply within HTTP_DEADLINE_SECONDS (a stall, a trickle)
    │   ├── FatalSourceError          other 4xx, Blockchair 430/434 (blocked); retrying will not help
    │   │   ├── AuthError             401/403, CoinGecko 10002/10010/10011, "invalid api key"
    │   │   ├── PlanLimitError        CoinGecko 10005/10012 (endpoint or history beyond the plan)
    │   │   └── ResponseTooLarge      a body over HTTP_MAX_RESPONSE_BYTES (it will be as big again)
    │   └── ResponseFormatError       2xx whose body is not JSON or not the expected envelope
    ├── RecordValidationError         one invalid record (record, reason, field)
    ├── DatabaseError                 the database cannot be used as it is (exit_code per cause)
    │   ├── DatabaseUnavailable       refused, terminated, locked or I/O failing: wait and retry (3)
    │   ├── DatabaseNotFound          no SQLite file / no such PostgreSQL database (4)
    │   ├── DatabaseCorrupt           the file is not a database or is malformed (5)
    │   ├── SchemaTooNew              migrated by a newer crypto-pipeline: upgrade the code (6)
    │   ├── SchemaTooOld              older schema (or none): run `crypto-pipeline init-db` (7)
    │   ├── SchemaMismatch            the alembic_version stamp does not match the tables (8)
    │   ├── UnsupportedDatabase       DATABASE_URL is not a URL we can use (also a ConfigError) (9)
    │   ├── DatabaseReplaced          the SQLite file was deleted or replaced under a running process (10)
    │   └── WorldMismatch             simulated data and real APIs (or the reverse) in one database (11)
    ├── Interrupted                   the process is stopping; the unit is closed as failed
    ├── UnitTimeout                   the unit spent UNIT_TIME_BUDGET_SECONDS; closed as failed, rerun it
    └── AlertDeliveryError            an alert channel could not deliver a message (redacted text)

Messages are built here from parts the HTTP client has already redacted; they never carry
an API key. ``error.kind`` (the class name) is stable and meant for storing.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlertDeliveryError",
    "AuthError",
    "ConfigError",
    "DatabaseCorrupt",
    "DatabaseError",
    "DatabaseNotFound",
    "DatabaseReplaced",
    "DatabaseUnavailable",
    "DeadlineExceeded",
    "FatalSourceError",
    "Interrupted",
    "PipelineError",
    "PlanLimitError",
    "RateLimitedError",
    "RecordValidationError",
    "ResponseFormatError",
    "ResponseTooLarge",
    "RetriableSourceError",
    "SchemaMismatch",
    "SchemaTooNew",
    "SchemaTooOld",
    "SourceError",
    "UnitTimeout",
    "WorldMismatch",
    "UnsupportedDatabase",
]

MAX_MESSAGE_CHARS = 300


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Cut text to at most `limit` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def _rebuild(cls: type[PipelineError], kwargs: dict[str, Any]) -> PipelineError:
    """Recreate an error from its constructor arguments (pickle support)."""
    return cls(**kwargs)


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose."""

    @property
    def kind(self) -> str:
        """Stable name of the error type, for storing in run logs."""
        return type(self).__name__


class ConfigError(PipelineError):
    """Settings are missing or inconsistent."""


class SourceError(PipelineError):
    """A call to an external HTTP source failed."""

    def __init__(
        self,
        detail: str,
        *,
        source: str,
        endpoint: str,
        status: int | None = None,
        api_code: int | None = None,
        attempts: int | None = None,
    ) -> None:
        self.detail = detail
        self.source = source
        self.endpoint = endpoint
        self.status = status
        self.api_code = api_code
        self.attempts = attempts
        super().__init__(self._message())

    def _message(self) -> str:
        """Build 'source endpoint: HTTP s (error_code c): detail', bounded in length."""
        codes = []
        if self.status is not None:
            codes.append(f"HTTP {self.status}")
        if self.api_code is not None:
            codes.append(f"(error_code {self.api_code})")
        head = f"{self.source} {self.endpoint}: " + (" ".join(codes) + ": " if codes else "")
        suffix = ""
        if self.attempts is not None:
            suffix = f" (gave up after {self.attempts} attempt{'' if self.attempts == 1 else 's'})"
        # Truncate before the suffix so the attempt count always survives.
        return truncate(head + self.detail, MAX_MESSAGE_CHARS - len(suffix)) + suffix

    def _init_kwargs(self) -> dict[str, Any]:
        """Constructor arguments that recreate this error."""
        return {
            "detail": self.detail,
            "source": self.source,
            "endpoint": self.endpoint,
            "status": self.status,
            "api_code": self.api_code,
            "attempts": self.attempts,
        }

    def with_attempts(self, attempts: int) -> SourceError:
        """Return a copy of this error whose message records how many attempts were made."""
        return type(self)(**{**self._init_kwargs(), "attempts": attempts})

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments break Exception's default pickling (multiprocessing, caches).
        return (_rebuild, (type(self), self._init_kwargs()))


class RetriableSourceError(SourceError):
    """A transient failure: retrying later may succeed."""

    def __init__(
        self,
        detail: str,
        *,
        source: str,
        endpoint: str,
        status: int | None = None,
        api_code: int | None = None,
        attempts: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            detail, source=source, endpoint=endpoint, status=status, api_code=api_code, attempts=attempts
        )

    def _init_kwargs(self) -> dict[str, Any]:
        """Constructor arguments that recreate this error."""
        return {**super()._init_kwargs(), "retry_after": self.retry_after}


class RateLimitedError(RetriableSourceError):
    """The source answered 429: we sent too many requests."""


class DeadlineExceeded(RetriableSourceError):
    """The reply was not complete within the attempt's deadline (a stalled or trickling source)."""


class FatalSourceError(SourceError):
    """A permanent failure: the same request will fail again."""


class AuthError(FatalSourceError):
    """The API key is missing, wrong, or used against the wrong host."""


class PlanLimitError(FatalSourceError):
    """The request needs a higher API plan (endpoint or time range not included)."""


class ResponseTooLarge(FatalSourceError):
    """The reply body is over the size cap; refused while it streams, never read whole."""


class ResponseFormatError(SourceError):
    """A successful status with a body that is not the JSON we expect."""


class RecordValidationError(PipelineError):
    """One record from a source failed validation."""

    def __init__(self, reason: str, *, record: Any, field: str | None = None) -> None:
        self.reason = reason
        self.record = record
        self.field = field
        where = f" (field {field!r})" if field else ""
        super().__init__(truncate(f"invalid record{where}: {reason}"))

    def __reduce__(self) -> tuple[Any, ...]:
        # Same reason as SourceError.__reduce__: keyword-only constructor arguments.
        kwargs = {"reason": self.reason, "record": self.record, "field": self.field}
        return (_rebuild, (type(self), kwargs))


class DatabaseError(PipelineError):
    """The database cannot be used as it is; the message is one line without any password.

    `exit_code` is the command line's exit status for this cause, distinct per subclass.
    """

    exit_code: int = 3


class DatabaseUnavailable(DatabaseError):
    """The database is unreachable or busy for now (connection refused or terminated, a write lock held
    past the busy timeout, an I/O error): long-lived loops back off and carry on when it returns."""

    exit_code = 3


# The causes below are permanent: retrying will not help, a person has to act. Each has its own exit code so
# that a wrapper script (or the launcher) can tell them apart without parsing the message.


class DatabaseNotFound(DatabaseError):
    """There is no database where DATABASE_URL points: no SQLite file (for a command that only reads), or
    the PostgreSQL server has no database of that name."""

    exit_code = 4


class DatabaseCorrupt(DatabaseError):
    """The SQLite file is not a database (garbage, wrong file) or is malformed (truncated, damaged)."""

    exit_code = 5


class SchemaTooNew(DatabaseError):
    """The database was migrated by a newer crypto-pipeline than this one: upgrade the code."""

    exit_code = 6


class SchemaTooOld(DatabaseError):
    """The schema is older than the code (or absent) and this command does not migrate: run init-db."""

    exit_code = 7


class SchemaMismatch(DatabaseError):
    """The schema stamp (alembic_version) does not match the tables, so migrating would fail half-way."""

    exit_code = 8


class UnsupportedDatabase(DatabaseError, ConfigError):
    """DATABASE_URL names no database we can use: a typo in the scheme, a bad port, another driver, or an
    in-memory SQLite database where the data must outlive the process. Also a ConfigError, since the fix
    is in the configuration."""

    exit_code = 9


class DatabaseReplaced(DatabaseError):
    """The SQLite file was deleted or replaced while this process had it open: writing on would go into
    an unlinked file (lost on close) or a stranger's database, so the process stops instead."""

    exit_code = 10


class WorldMismatch(DatabaseError):
    """The database holds data from the simulator and the settings point at the real APIs, or the reverse:
    feeding it would mix invented blocks and prices with real ones, so nothing is fetched."""

    exit_code = 11


class Interrupted(PipelineError):
    """The process was asked to stop (SIGTERM, Ctrl-C) while a unit was running."""

    def __init__(self, detail: str = "interrupted") -> None:
        super().__init__(detail)


class UnitTimeout(PipelineError):
    """An ingestion unit used up its time budget; it is closed as failed so that its slice can be rerun."""

    def __init__(self, detail: str = "unit time budget spent") -> None:
        super().__init__(detail)


class AlertDeliveryError(PipelineError):
    """An alert channel (webhook, Slack, e-mail) could not deliver a message. The text is redacted by the
    channel: it never holds the webhook URL (its token), the SMTP password or any configured secret.

    `retriable` is False when sending the same message again cannot help (a 404 or 403 from the
    receiver, SMTP authentication refused), so that the sender stops at once instead of backing off.
    """

    def __init__(self, detail: str, *, retriable: bool = True) -> None:
        self.detail = detail
        self.retriable = retriable
        super().__init__(detail)

    def __reduce__(self) -> tuple[Any, ...]:
        # Same reason as SourceError.__reduce__: keyword-only constructor arguments.
        return (_rebuild, (type(self), {"detail": self.detail, "retriable": self.retriable}))
