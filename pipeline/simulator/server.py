"""HTTP server of the simulator and the `Simulator` object tests and demos drive."""

from __future__ import annotations

import logging
import socket
import struct
import threading
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from pipeline.simulator.config import SimulatorConfig
from pipeline.simulator.envelope import Reply
from pipeline.simulator.faults import FaultRule
from pipeline.simulator.market import COINS, ts_day
from pipeline.simulator.service import RESET, Service

logger = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    """Turns HTTP requests into `Service.respond` calls."""

    protocol_version = "HTTP/1.1"  # keep-alive matters for the 1000-page benchmark
    server_version = "nginx"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed eventually
    server: _Server

    def setup(self) -> None:
        """Disable Nagle: headers and body are separate writes, which would stall on delayed ACKs."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            reply = self.server.service.respond(self.command, self.path, self.headers, body)
        except Exception:  # a bug must not kill the connection silently
            logger.exception("simulator failed on %s %s", self.command, self.path)
            reply = Reply(500, {"error": "simulator internal error"})
        if reply is RESET:
            self._reset()
        else:
            self._send(reply)

    do_GET = do_POST = do_DELETE = do_PUT = _serve

    def _send(self, reply: Reply) -> None:
        if reply.chunks is not None:
            self._send_stream(reply)
            return
        data = reply.body()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            # The client gave up (e.g. its timeout fired during a "timeout" fault).
            self.close_connection = True

    def _send_stream(self, reply: Reply) -> None:
        """Send the body as `reply.chunks` produces it, until it ends or the client goes away."""
        assert reply.chunks is not None
        chunked = reply.length is None
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(reply.length))
            self.end_headers()
            for piece in reply.chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            # The client gave up on the reply (its deadline, its size cap) or the simulator is stopping.
            self.close_connection = True

    def _reset(self) -> None:
        # SO_LINGER (1, 0) makes close() send RST instead of FIN: the client sees a reset.
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        """Route access logs to `logging` instead of stderr."""
        logger.debug("%s - %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    """Threading server that remembers open connections so `stop` can close them."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], service: Service) -> None:
        self.service = service
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Shut down every connection still open (idle keep-alive or sleeping in a fault)."""
        with self._open_lock:
            pending = list(self._open)
            self._open.clear()
        for sock in pending:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Simulator:
    """Local Blockchair + CoinGecko simulator serving deterministic data on one port."""

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SimulatorConfig()
        self._service = Service(self.config)
        # Binding now makes base_url usable before start().
        self._server = _Server((host, port), self._service)
        self._thread: threading.Thread | None = None
        # The socket's own (host, port): server_address is typed to also allow AF_UNIX paths.
        bound_host, bound_port = self._server.socket.getsockname()[:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        self.blockchair_url = self.base_url
        self.coingecko_url = self.base_url + "/api/v3"

    def start(self) -> Simulator:
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="simulator",
                daemon=True,
            )
            self._thread.start()
            logger.info(
                "simulator listening on %s (anchor time %s)", self.base_url, self.anchor_time.isoformat()
            )
        return self

    def stop(self) -> None:
        """Stop serving and close the socket and any open connections."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.close_open_connections()
        self._server.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def add_fault(self, rule: FaultRule) -> None:
        """Append a fault rule."""
        self._service.faults.add(rule)

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._service.faults.clear()

    def reorg(self, chain: str, depth: int) -> None:
        """Replace the newest ``depth`` blocks of ``chain`` (new hashes and contents)."""
        self._service.book.reorg(chain, depth)

    def advance_tip(self, chain: str, blocks: int) -> None:
        """Move the tip of ``chain`` forward by ``blocks`` now."""
        self._service.book.advance(chain, blocks)

    def tip(self, chain: str) -> int:
        """Return the current tip height of ``chain``."""
        return self._service.book.tip(chain)

    @property
    def anchor_time(self) -> datetime:
        """Return T0 (UTC, whole seconds): the time of the block at each chain's configured tip.

        Passing it as `SimulatorConfig.anchor_time` to another simulator with the same seed and config
        makes that one serve identical blocks at every height (with tip growth the tips still follow
        the clock).
        """
        return datetime.fromtimestamp(self._service.anchor_ts, UTC)

    def block_time(self, chain: str, height: int) -> datetime:
        """Return the time (UTC) of the block at ``height``, as its ``time`` field shows it."""
        return datetime.fromtimestamp(self._service.book.block_time(chain, height), UTC)

    def request_counts(self) -> dict[str, int]:
        """Return served requests per endpoint kind, faulted ones included."""
        return self._service.request_counts()

    def reset_counts(self) -> None:
        """Zero the request counters."""
        self._service.reset_counts()

    def stats(self) -> dict[str, Any]:
        """Return what GET /_sim/stats returns."""
        return self._service.stats()

    def expected_block(self, chain: str, height: int) -> dict[str, Any]:
        """Return the /blocks row for ``height`` as it would be served now."""
        return dict(self._service.book.block(chain, height))

    def expected_transactions(self, chain: str, height: int) -> list[dict[str, Any]]:
        """Return the /transactions rows of block ``height`` in index order."""
        return [dict(tx) for tx in self._service.book.transactions(chain, height)]

    def expected_daily_prices(
        self, coin_id: str, start: date, end: date
    ) -> list[tuple[date, float, float | None, float | None]]:
        """Return (day, price, market cap or None, volume) for the 00:00 UTC points in [start, end]."""
        if coin_id not in COINS:
            raise KeyError(coin_id)
        return self._service.market.expected_daily(coin_id, start, end, ts_day(self._service.now()))

    def expected_price(
        self, coin_id: str, at: datetime, quote: str = "usd"
    ) -> tuple[float, float, float] | None:
        """Return (price, market cap, 24 h volume) in ``quote`` at ``at``, as a chart point there holds
        them (a defective market cap at that point is not applied)."""
        if coin_id not in COINS:
            raise KeyError(coin_id)
        return self._service.market.value_in(coin_id, at.timestamp(), quote)

    def now(self) -> datetime:
        """Return the simulator's clock (UTC)."""
        return datetime.fromtimestamp(self._service.now(), UTC)

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        logger.info("simulator listening on %s (anchor time %s)", self.base_url, self.anchor_time.isoformat())
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._server.close_open_connections()
            self._server.server_close()


def serve_forever(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run a simulator in the foreground (for a `simulate --port` command)."""
    Simulator(config, host, port).serve_forever()
