"""The coins the pipeline ingests (`coin_metadata`): adding one and turning its ingestion on and off.

Each change commits with its audit row (`coin_add`, `coin_enable`, `coin_disable`) in one transaction, so
the coins table never changes without a record of who changed it. The checks against the sources (does
the CoinGecko id exist, which family is the chain) are `pipeline.services.coins`; this module only writes.

The scheduler and every ingestor read `get_coins(active_only=True)`: a coin is ingested while it is both
`is_active` and `ingestion_enabled`. Disabling clears `ingestion_enabled` (the coin and its data stay);
enabling sets both, so that a coin made inactive by hand comes back too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from pipeline.actors import Actor
from pipeline.models import CoinMetadata
from pipeline.schemas import CoinMetadataData
from pipeline.store.audit import AuditLogMixin

# What `coins add` writes; the bookmarks start empty and belong to the ingestors.
_NEW_COIN_FIELDS = (
    "symbol",
    "name",
    "coingecko_id",
    "blockchair_chain",
    "chain_family",
    "listed_since",
    "is_active",
    "ingestion_enabled",
)


class CoinMixin(AuditLogMixin):
    """`coin_metadata` writes of `DatabaseService`, each with its audit row."""

    def coins_in_the_way(
        self, *, symbol: str, coingecko_id: str | None, blockchair_chain: str | None
    ) -> list[CoinMetadataData]:
        """The stored coins that already hold this symbol, CoinGecko id or Blockchair chain (each is
        unique), so that a new coin with them would be refused."""
        clauses = [CoinMetadata.symbol == symbol]
        if coingecko_id is not None:
            clauses.append(CoinMetadata.coingecko_id == coingecko_id)
        if blockchair_chain is not None:
            clauses.append(CoinMetadata.blockchair_chain == blockchair_chain)
        stmt = select(CoinMetadata).where(or_(*clauses)).order_by(CoinMetadata.symbol)
        return self._select_models(stmt, CoinMetadataData)

    def add_coin(
        self, coin: CoinMetadataData, *, actor: Actor, params: dict[str, Any] | None = None
    ) -> CoinMetadataData:
        """Insert a new coin and its `coin_add` audit row (with `params`: what was checked) together.

        Raises ValueError, with nothing written, when its symbol, CoinGecko id or chain is taken (also by
        a coin added by someone else a moment ago: the unique keys decide).
        """
        values = coin.model_dump(include=set(_NEW_COIN_FIELDS))
        try:
            with self.transaction() as conn:
                conn.execute(insert(CoinMetadata).values(**values))
                self.record_audit(
                    actor,
                    "coin_add",
                    target=f"coin:{coin.symbol}",
                    params={**_audit_fields(values), **(params or {})},
                    conn=conn,
                )
        except IntegrityError:
            taken = self.coins_in_the_way(
                symbol=coin.symbol, coingecko_id=coin.coingecko_id, blockchair_chain=coin.blockchair_chain
            )
            msg = f"coin {coin.symbol} not added: " + (
                "; ".join(clash(coin, other) for other in taken) or "it clashes with a stored coin"
            )
            raise ValueError(msg) from None
        return self.get_coin(coin.symbol)

    def set_coin_enabled(self, symbol: str, enabled: bool, *, actor: Actor) -> tuple[CoinMetadataData, bool]:
        """Turn a coin's ingestion on or off, with its `coin_enable` / `coin_disable` audit row; returns the
        coin and whether anything changed (a coin already in that state writes nothing, no audit row).

        Raises LookupError for an unknown symbol.
        """
        self.get_coin(symbol)  # an unknown symbol is refused before anything is written
        wanted = CoinMetadata.symbol == symbol
        with self.transaction() as conn:
            before = _state(conn, symbol)
            if enabled:
                stmt = (
                    update(CoinMetadata)
                    .where(
                        wanted,
                        or_(CoinMetadata.ingestion_enabled.is_(False), CoinMetadata.is_active.is_(False)),
                    )
                    .values(ingestion_enabled=True, is_active=True)
                )
            else:
                stmt = (
                    update(CoinMetadata)
                    .where(wanted, CoinMetadata.ingestion_enabled.is_(True))
                    .values(ingestion_enabled=False)
                )
            changed = bool(conn.execute(stmt).rowcount)
            if changed:
                self.record_audit(
                    actor,
                    "coin_enable" if enabled else "coin_disable",
                    target=f"coin:{symbol}",
                    params={"symbol": symbol, "before": before, "after": _state(conn, symbol)},
                    conn=conn,
                )
        return self.get_coin(symbol), changed

    def get_coin(self, symbol: str) -> CoinMetadataData:
        """One coin by its symbol (exact); raises LookupError when there is none."""
        found = self._select_models(
            select(CoinMetadata).where(CoinMetadata.symbol == symbol), CoinMetadataData
        )
        if not found:
            msg = f"no coin with symbol {symbol!r}"
            raise LookupError(msg)
        return found[0]


def _state(conn: Connection, symbol: str) -> dict[str, bool]:
    """A coin's two switches, as its audit rows record them before and after a change."""
    row = conn.execute(
        select(CoinMetadata.is_active, CoinMetadata.ingestion_enabled).where(CoinMetadata.symbol == symbol)
    ).one()
    return {"is_active": bool(row.is_active), "ingestion_enabled": bool(row.ingestion_enabled)}


def _audit_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The new coin's fields as JSON (a date as ISO text)."""
    return {key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in values.items()}


def clash(new: CoinMetadataData, other: CoinMetadataData) -> str:
    """Why `other` (a stored coin) stands in the way of `new`: which of its unique keys it holds."""
    if other.symbol == new.symbol:
        return f"symbol {new.symbol} is taken by {other.name}"
    if new.coingecko_id is not None and other.coingecko_id == new.coingecko_id:
        return f"CoinGecko id {new.coingecko_id} is already coin {other.symbol}'s"
    return f"Blockchair chain {new.blockchair_chain} is already coin {other.symbol}'s"
