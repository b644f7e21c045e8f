"""Run the simulator in the foreground: ``python -m pipeline.simulator --port 8000``."""

from __future__ import annotations

import argparse
import logging
from datetime import date, datetime

from pipeline.simulator.config import SimulatorConfig
from pipeline.simulator.server import serve_forever


def _iso_datetime(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    """Parse options and serve until interrupted."""
    parser = argparse.ArgumentParser(description="Local Blockchair + CoinGecko simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-tip-growth", action="store_true")
    parser.add_argument("--tx-per-block", type=int, nargs=2, metavar=("MIN", "MAX"), default=(3, 12))
    parser.add_argument("--plan", choices=("public", "demo", "pro"), default="public")
    parser.add_argument("--today", type=date.fromisoformat, default=None)
    parser.add_argument(
        "--anchor-time",
        type=_iso_datetime,
        default=None,
        metavar="ISO8601",
        help="time of the block at each configured tip height (UTC if no offset is given); "
        "default: now minus 24 hours. Pin it to serve identical blocks across runs",
    )
    parser.add_argument("--rate-limit", type=int, default=None, help="requests per minute per API")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = SimulatorConfig(
        seed=args.seed,
        tip_growth=not args.no_tip_growth,
        tx_per_block=tuple(args.tx_per_block),
        coingecko_plan=args.plan,
        today=args.today,
        anchor_time=args.anchor_time,
        rate_limit_per_minute=args.rate_limit,
    )
    try:
        serve_forever(config, args.host, args.port)
    except KeyboardInterrupt:
        logging.getLogger(__name__).info("simulator stopped")


if __name__ == "__main__":
    main()
