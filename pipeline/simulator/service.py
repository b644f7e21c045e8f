"""Request pipeline independent of HTTP plumbing: routing, counting, auth, rate limits and faults."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as dtime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pipeline.simulator.blockchair import BlockchairApi
from pipeline.simulator.chains import CHAINS, ChainBook
from pipeline.simulator.coingecko import CoinGeckoApi
from pipeline.simulator.config import SimulatorConfig
from pipeline.simulator.corrupt import corrupt
from pipeline.simulator.envelope import Reply, bc_error, cg_error, cg_key_error, html_error
from pipeline.simulator.faults import BLOCKCHAIR_ENDPOINTS, COINGECKO_ENDPOINTS, FaultBook, FaultRule
from pipeline.simulator.market import HOUR, Market, day_ts, ts_day

logger = logging.getLogger(__name__)
REQUEST_KINDS = (*BLOCKCHAIR_ENDPOINTS, *COINGECKO_ENDPOINTS, "unknown")
RESET = Reply(0)  # sentinel: abort the connection without answering
_CG_PREFIX = "/api/v3"


@dataclass(frozen=True)
class Route:
    """What a request targets: the API, the endpoint kind and the chains/coins involved."""

    api: str
    kind: str
    chains: tuple[str, ...]
    parts: list[str]


def classify(path: str, params: dict[str, str]) -> Route:
    """Map a URL path onto an API, an endpoint kind and its chain or coin ids."""
    if path == _CG_PREFIX or path.startswith(_CG_PREFIX + "/"):
        parts = path[len(_CG_PREFIX) :].strip("/").split("/")
        if parts == ["ping"]:
            return Route("coingecko", "ping", (), parts)
        if parts == ["simple", "price"]:
            ids = tuple(i.strip() for i in params.get("ids", "").split(",") if i.strip())
            return Route("coingecko", "simple_price", ids, parts)
        if len(parts) == 4 and parts[0] == "coins" and parts[2:] == ["market_chart", "range"]:
            return Route("coingecko", "market_chart_range", (parts[1],), parts)
        if len(parts) == 3 and parts[0] == "coins" and parts[2] == "history":
            return Route("coingecko", "history", (parts[1],), parts)
        if len(parts) == 2 and parts[0] == "coins" and parts[1] != "list":
            return Route("coingecko", "coin", (parts[1],), parts)
        return Route("coingecko", "unknown", (), parts)
    parts = path.strip("/").split("/")
    chain, rest = parts[0], parts[1:]
    kind = "unknown"
    if rest in (["stats"], ["blocks"], ["transactions"]):
        kind = rest[0]
    elif len(rest) == 3 and rest[0] == "dashboards" and rest[1] in ("address", "addresses"):
        kind = rest[1]
    return Route("blockchair", kind, (chain,), rest)


class RateLimiter:
    """Sliding one-minute window per API; refused requests do not consume budget."""

    def __init__(self, per_minute: int | None) -> None:
        self._limit = per_minute
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def check(self, api: str) -> int | None:
        """Record a request; return the Retry-After seconds if it exceeds the limit."""
        if self._limit is None:
            return None
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(api, deque())
            while hits and hits[0] <= now - 60:
                hits.popleft()
            if len(hits) >= self._limit:
                return max(1, int(hits[0] + 60 - now + 0.999))
            hits.append(now)
            return None

    def reset(self) -> None:
        """Forget every recorded request."""
        with self._lock:
            self._hits.clear()


class Service:
    """The whole simulated service: both APIs plus the /_sim control API."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        history = config.history_anchor_hours * HOUR
        pinned = config.anchor_time
        # T0 in whole seconds: the time of the block at each chain's configured tip height.
        self.anchor_ts = math.floor(pinned.timestamp() if pinned is not None else self.now() - history)
        # The nominal start day (T0 plus the history span): the reference "today" of address dashboards.
        self.anchor_day = ts_day(self.anchor_ts + history)
        self.market = Market(config.seed)
        self.book = ChainBook(
            config.seed,
            config.tips,
            config.tx_per_block,
            config.tip_growth,
            self.anchor_ts,
            self.now,
            self.market,
        )
        self.faults = FaultBook(list(config.faults))
        self.limiter = RateLimiter(config.rate_limit_per_minute)
        self.blockchair = BlockchairApi(
            config.seed, self.book, self.market, day_ts(self.anchor_day), self.now
        )
        self.coingecko = CoinGeckoApi(self.market, config.coingecko_plan, config.history_days, self.now)
        self._counts_lock = threading.Lock()
        self._counts = dict.fromkeys(REQUEST_KINDS, 0)

    def now(self) -> float:
        """Return the simulated UNIX time: real time, moved onto ``config.today`` when that is set."""
        real = datetime.now(UTC)
        if self.config.today is None:
            return real.timestamp()
        return (
            datetime.combine(self.config.today, dtime(), tzinfo=UTC).timestamp()
            + (real - datetime.combine(real.date(), dtime(), tzinfo=UTC)).total_seconds()
        )

    def request_counts(self) -> dict[str, int]:
        """Return served requests per endpoint kind."""
        with self._counts_lock:
            return dict(self._counts)

    def reset_counts(self) -> None:
        """Zero the request counters."""
        with self._counts_lock:
            self._counts = dict.fromkeys(REQUEST_KINDS, 0)

    def respond(self, method: str, raw_path: str, headers: Any, body: bytes) -> Reply:
        """Answer one HTTP request (``RESET`` means: drop the connection)."""
        url = urlsplit(raw_path)
        path = unquote(url.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if path.startswith("/_sim/"):
            return self._control(method, path, body)
        route = classify(path, params)
        with self._counts_lock:
            self._counts[route.kind] += 1
        if method != "GET":
            return _api_error(route.api, 405 if route.api == "coingecko" else 400)
        denied = self._check_key(route.api, params, headers)
        if denied is not None:
            return denied
        retry_after = self.limiter.check(route.api)
        if retry_after is not None:
            reply = _api_error(route.api, 429)
            reply.headers["Retry-After"] = str(retry_after)
            return reply
        rule = self.faults.pick(route.api, route.kind, route.chains)
        if rule is None:
            return self._handle(route, params)
        logger.debug("fault %s on %s %s", rule.kind, route.kind, route.chains)
        return self._apply_fault(rule, route, params)

    def _handle(self, route: Route, params: dict[str, str]) -> Reply:
        if route.api == "coingecko":
            return self.coingecko.handle(route.kind, route.parts, params)
        return self.blockchair.handle(route.kind, route.chains[0], route.parts, params)

    def _check_key(self, api: str, params: dict[str, str], headers: Any) -> Reply | None:
        if api == "blockchair":
            key = self.config.blockchair_key
            if key is not None and params.get("key") != key:
                return bc_error(402, "Invalid API key")
            return None
        key = self.config.coingecko_key
        if key is None:
            return None
        flavours = ("pro",) if self.config.coingecko_plan == "pro" else ("demo",)
        for flavour in flavours:
            sent = headers.get(f"x-cg-{flavour}-api-key") or params.get(f"x_cg_{flavour}_api_key")
            if sent == key:
                return None
        return cg_key_error(401)

    def _apply_fault(self, rule: FaultRule, route: Route, params: dict[str, str]) -> Reply:
        kind = rule.kind
        if kind in ("429", "500", "503", "401", "402"):
            reply = _api_error(route.api, int(kind))
            if kind == "429":
                reply.headers["Retry-After"] = str(rule.retry_after)
            return reply
        if kind == "reset":
            return RESET
        if kind == "html":
            host = "api.coingecko.com" if route.api == "coingecko" else "api.blockchair.com"
            return html_error(502, host)
        if kind in ("timeout", "slow"):
            # Sleep, then answer normally: a client with a shorter timeout gives up first.
            time.sleep(rule.delay)
        if kind == "endless":
            return Reply(200, chunks=_endless_body())
        if kind == "huge":
            return Reply(200, chunks=_sized_body(rule.size), length=rule.size)
        reply = self._handle(route, params)
        if kind == "trickle":
            body = reply.body()
            return Reply(
                reply.status,
                content_type=reply.content_type,
                chunks=_trickle(body, rule.delay),
                length=len(body),
            )
        if kind == "malformed_json":
            body = reply.body()
            return Reply(200, raw=body[: max(1, len(body) // 2)])
        if kind in ("missing_field", "wrong_type", "empty_data") and reply.status == 200:
            reply.payload = corrupt(kind, route.api, route.kind, reply.payload)
        return reply

    def _control(self, method: str, path: str, body: bytes) -> Reply:
        action = path[len("/_sim/") :].strip("/")
        try:
            payload = json.loads(body) if body else {}
            if (method, action) == ("GET", "stats"):
                return Reply(200, self.stats())
            if (method, action) == ("POST", "faults"):
                raw = payload if isinstance(payload, list) else [payload]
                for rule in [FaultRule.from_dict(r) for r in raw]:
                    self.faults.add(rule)
                return Reply(200, {"faults": self.faults.snapshot()})
            if (method, action) == ("DELETE", "faults"):
                self.faults.clear()
                return Reply(200, {"faults": []})
            if (method, action) == ("POST", "reorg"):
                self.book.reorg(_chain(payload), int(payload["depth"]))
                return Reply(200, self.stats())
            if (method, action) == ("POST", "advance"):
                self.book.advance(_chain(payload), int(payload["blocks"]))
                return Reply(200, self.stats())
            if (method, action) == ("POST", "reset"):
                self.reset_counts()
                self.faults.clear()
                self.limiter.reset()
                return Reply(200, self.stats())
        except (KeyError, TypeError, ValueError) as exc:
            return Reply(400, {"error": f"{type(exc).__name__}: {exc}"})
        return Reply(404, {"error": f"unknown control request {method} {path}"})

    def stats(self) -> dict[str, Any]:
        """Return counters, tips, faults and reorgs (the body of GET /_sim/stats)."""
        return {
            "requests": self.request_counts(),
            "tips": self.book.tips(),
            "faults": self.faults.snapshot(),
            "reorgs": self.book.reorg_history(),
        }


# JSON allows any amount of whitespace between tokens: bodies made of it stay valid JSON at any size.
_HEAD, _TAIL, _FILLER = b'{"data":[0', b"]}", b" " * 65_536


def _trickle(body: bytes, delay: float) -> Iterator[bytes]:
    """The body one byte at a time, `delay` seconds apart: never idle long enough for a read timeout."""
    for index in range(len(body)):
        if index:
            time.sleep(delay)
        yield body[index : index + 1]


def _endless_body() -> Iterator[bytes]:
    """A JSON document that never ends, sent as fast as the client reads it."""
    yield _HEAD
    while True:
        yield _FILLER


def _sized_body(size: int) -> Iterator[bytes]:
    """Exactly `size` bytes, 64 KiB at a time: valid JSON (`{"data":[0 ... ]}`) from 12 bytes up."""
    if size < len(_HEAD) + len(_TAIL):
        yield b" " * size
        return
    yield _HEAD
    left = size - len(_HEAD) - len(_TAIL)
    while left > 0:
        piece = _FILLER[: min(left, len(_FILLER))]
        left -= len(piece)
        yield piece
    yield _TAIL


def _chain(payload: dict[str, Any]) -> str:
    chain: str = payload["chain"]
    if chain not in CHAINS:
        raise ValueError(f"unknown chain {chain!r}")
    return chain


def _api_error(api: str, status: int) -> Reply:
    return cg_error(status) if api == "coingecko" else bc_error(status)
