"""Per chain: blocks, transactions (by coin, by block, by hash) and the watched addresses."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from pipeline.api import convert
from pipeline.api.context import Ctx, IsoTime, check_order, utc_time
from pipeline.api.models import Address, Block, Item, Page, Transaction
from pipeline.api.pagination import DEFAULT_LIMIT, CursorParam, Limit, decode_cursor, encode_cursor
from pipeline.api.problems import not_found
from pipeline.api.routes.common import HEIGHT_RANGE, CoinPath, Height, documented, reply
from pipeline.schemas import CoinMetadataData
from pipeline.store import queries
from pipeline.store.api_reads import newest

router = APIRouter(tags=["chains"])

TxHash = Annotated[
    str, Path(pattern=r"^(0[xX])?[0-9a-fA-F]{64}$", description="A transaction hash (64 hex digits).")
]
TX_KEY: list[type | tuple[int, int]] = [HEIGHT_RANGE, str]


@router.get("/coins/{coin}/blocks", response_model=Page[Block], responses=documented(400, 404))
def list_blocks(
    request: Request,
    ctx: Ctx,
    coin: CoinPath,
    start: Annotated[
        IsoTime | None, Query(description="Earliest block time, ISO 8601 (UTC by default).")
    ] = None,
    end: Annotated[IsoTime | None, Query(description="Latest block time, included.")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Response:
    """A chain's stored blocks, highest first."""
    found = ctx.coin(coin)
    start, end = utc_time(start, "start"), utc_time(end, "end")
    check_order(start, end)
    scope = {"coin": found.symbol, "start": start, "end": end}
    below = None
    if cursor:
        below = int(decode_cursor(cursor, "blocks", scope, [HEIGHT_RANGE]).key[0])
    rows = ctx.db.blocks_page(ctx.chain(found), limit=limit + 1, below=below, start=start, end=end)
    page, more = rows[:limit], len(rows) > limit
    document = Page[Block](
        data=[convert.block(r.record) for r in page],
        next_cursor=encode_cursor("blocks", scope, [page[-1].record.block_id]) if more else None,
        limit=limit,
        data_as_of=newest([r.updated_at for r in page]),
    )
    return reply(request, ctx, document)


@router.get("/coins/{coin}/blocks/{height}", response_model=Item[Block], responses=documented(400, 404))
def get_block(request: Request, ctx: Ctx, coin: CoinPath, height: Height) -> Response:
    """One stored block."""
    found = ctx.coin(coin)
    rows = ctx.db.blocks_page(ctx.chain(found), limit=1, highest=height, lowest=height)
    if not rows:
        raise not_found("height", f"no stored {found.symbol} block at height {height}")
    return reply(request, ctx, Item[Block](data=convert.block(rows[0].record), data_as_of=rows[0].updated_at))


def _transactions(
    request: Request,
    ctx: Ctx,
    coin: CoinMetadataData,
    *,
    block_id: int | None,
    limit: int,
    cursor: str | None,
) -> Response:
    """A page of a chain's (or a block's) transactions, by (block_id desc, tx_hash asc).

    The first page pins the highest block holding transactions; later pages list nothing above it, so
    transactions of blocks stored meanwhile never enter a listing under way."""
    symbol = ctx.chain(coin)
    scope = {"coin": coin.symbol, "block": block_id}
    after: tuple[int, str] | None = None
    if cursor:
        found = decode_cursor(cursor, "transactions", scope, TX_KEY, pin=HEIGHT_RANGE)
        after, top = (int(found.key[0]), str(found.key[1])), found.pin
    else:
        top = block_id if block_id is not None else ctx.db.top_transaction_block(symbol)
    rows = ctx.db.transactions_page(symbol, limit=limit + 1, block_id=block_id, after=after, top=top)
    page, more = rows[:limit], len(rows) > limit
    last = page[-1].record if page else None
    document = Page[Transaction](
        data=[convert.transaction(r.record) for r in page],
        next_cursor=(
            encode_cursor("transactions", scope, [last.block_id, last.tx_hash], pin=top)
            if more and last is not None
            else None
        ),
        limit=limit,
        data_as_of=newest([r.updated_at for r in page]),
    )
    return reply(request, ctx, document)


@router.get("/coins/{coin}/transactions", response_model=Page[Transaction], responses=documented(400, 404))
def list_transactions(
    request: Request, ctx: Ctx, coin: CoinPath, limit: Limit = DEFAULT_LIMIT, cursor: CursorParam = None
) -> Response:
    """A chain's stored transactions, newest block first (then by hash)."""
    return _transactions(request, ctx, ctx.coin(coin), block_id=None, limit=limit, cursor=cursor)


@router.get(
    "/coins/{coin}/blocks/{height}/transactions",
    response_model=Page[Transaction],
    responses=documented(400, 404),
)
def block_transactions(
    request: Request,
    ctx: Ctx,
    coin: CoinPath,
    height: Height,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Response:
    """The stored transactions of one stored block, by hash."""
    found = ctx.coin(coin)
    if not ctx.db.blocks_page(ctx.chain(found), limit=1, highest=height, lowest=height):
        raise not_found("height", f"no stored {found.symbol} block at height {height}")
    return _transactions(request, ctx, found, block_id=height, limit=limit, cursor=cursor)


@router.get(
    "/coins/{coin}/transactions/{tx_hash}", response_model=Item[Transaction], responses=documented(400, 404)
)
def get_transaction(request: Request, ctx: Ctx, coin: CoinPath, tx_hash: TxHash) -> Response:
    """One stored transaction by its hash (Ethereum hashes with or without 0x)."""
    found = ctx.coin(coin)
    digits = tx_hash.lower().removeprefix("0x")
    stored_as = f"0x{digits}" if found.chain_family == "ethereum" else digits
    row = ctx.db.get_transaction(ctx.chain(found), stored_as)
    if row is None:
        raise not_found("tx_hash", f"no stored {found.symbol} transaction {stored_as}")
    document = Item[Transaction](data=convert.transaction(row.record), data_as_of=row.updated_at)
    return reply(request, ctx, document)


@router.get("/coins/{coin}/addresses", response_model=Page[Address], responses=documented(400, 404))
def list_addresses(
    request: Request, ctx: Ctx, coin: CoinPath, limit: Limit = DEFAULT_LIMIT, cursor: CursorParam = None
) -> Response:
    """A chain's watched addresses as last observed, by address."""
    found = ctx.coin(coin)
    scope = {"coin": found.symbol}
    # Ordered here, as the cursor compares: PostgreSQL's collation may order mixed case otherwise.
    rows = sorted(queries.addresses(ctx.db, ctx.chain(found)), key=lambda r: r.address)
    if cursor:
        after = str(decode_cursor(cursor, "addresses", scope, [str]).key[0])
        rows = [r for r in rows if r.address > after]
    page, more = rows[:limit], len(rows) > limit
    document = Page[Address](
        data=[convert.address(r) for r in page],
        next_cursor=encode_cursor("addresses", scope, [page[-1].address]) if more else None,
        limit=limit,
        data_as_of=newest([r.updated_at for r in page]),
    )
    return reply(request, ctx, document)


__all__ = ["router"]
