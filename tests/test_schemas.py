"""Tests for pipeline.schemas: the business rules every record passes before it is stored."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from pipeline.schemas import (
    BlockchainAddressData,
    BlockchainBlockData,
    BlockchainTransactionData,
    DateCoverage,
    HealthStatus,
    MarketPriceData,
    Reject,
    UpsertResult,
    describe_validation_error,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
AT_NOW = {"now": NOW}
BTC_HASH = "00000000000000000002a7c4c1e48d76c5a37902165a270156b7a8d72728a054"
ETH_HASH = "0x" + "ab" * 32
ETH_SENDER = "0x" + "1f" * 20
ETH_RECIPIENT = "0x" + "2e" * 20


def make_block(**overrides):
    values = {
        "coin_symbol": "BTC",
        "block_id": 840_000,
        "hash": BTC_HASH,
        "time": NOW - timedelta(hours=1),
        "transaction_count": 3050,
        "size": 2_325_617,
        "output_total": 2**64 * 1000 + 12345,
        "fee_total": 10**30 + 7,
    }
    values.update(overrides)
    return values


def make_transaction(**overrides):
    values = {
        "coin_symbol": "ETH",
        "tx_hash": ETH_HASH,
        "block_id": 19_000_000,
        "time": NOW - timedelta(hours=1),
        "fee": 21_000 * 30 * 10**9,
        "value": 10**30 + 7,
        "sender": ETH_SENDER,
        "recipient": ETH_RECIPIENT,
    }
    values.update(overrides)
    return values


def make_address(**overrides):
    values = {"coin_symbol": "BTC", "address": "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh", "balance": 5}
    values.update(overrides)
    return values


def make_price(**overrides):
    values = {"coin_id": "bitcoin", "price_date": date(2024, 5, 31), "price_usd": Decimal("67000.12")}
    values.update(overrides)
    return values


def error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in err["loc"]) for err in exc.errors()}


# ---------------------------------------------------------------------- hashes


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (BTC_HASH, BTC_HASH),
        (BTC_HASH.upper(), BTC_HASH),
        (f"  {BTC_HASH}\n", BTC_HASH),
        (ETH_HASH, ETH_HASH),
        ("0X" + "AB" * 32, ETH_HASH),
    ],
)
def test_hash_accepts_64_hex_digits_and_normalises_to_lowercase(raw, expected):
    coin = "ETH" if expected.startswith("0x") else "BTC"  # each chain's own hash form
    block = BlockchainBlockData.model_validate(make_block(coin_symbol=coin, hash=raw), context=AT_NOW)
    assert block.hash == expected
    tx = BlockchainTransactionData.model_validate(
        make_transaction(coin_symbol=coin, tx_hash=raw), context=AT_NOW
    )
    assert tx.tx_hash == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        BTC_HASH[:-1],
        BTC_HASH + "0",
        BTC_HASH[:-1] + "g",
        "0x" + BTC_HASH[:-2],
        "0x0x" + "ab" * 31,
        "xx" + "ab" * 32,
        BTC_HASH[:32] + " " + BTC_HASH[32:],
    ],
)
def test_malformed_hash_is_rejected(bad):
    with pytest.raises(ValidationError) as caught:
        BlockchainBlockData.model_validate(make_block(hash=bad), context=AT_NOW)
    assert error_fields(caught.value) == {"hash"}
    with pytest.raises(ValidationError) as caught:
        BlockchainTransactionData.model_validate(make_transaction(tx_hash=bad), context=AT_NOW)
    assert error_fields(caught.value) == {"tx_hash"}


def test_ethereum_context_requires_0x_prefix():
    context = {**AT_NOW, "family": "ethereum"}
    ok = BlockchainBlockData.model_validate(make_block(hash=ETH_HASH), context=context)
    assert ok.hash == ETH_HASH
    with pytest.raises(ValidationError, match="0x"):
        BlockchainBlockData.model_validate(make_block(hash="ab" * 32), context=context)
    with pytest.raises(ValidationError, match="0x"):
        BlockchainTransactionData.model_validate(make_transaction(tx_hash="ab" * 32), context=context)


def test_bitcoin_context_refuses_0x_prefix():
    context = {**AT_NOW, "family": "bitcoin"}
    ok = BlockchainBlockData.model_validate(make_block(hash=BTC_HASH), context=context)
    assert ok.hash == BTC_HASH
    with pytest.raises(ValidationError, match="0x"):
        BlockchainBlockData.model_validate(make_block(hash=ETH_HASH), context=context)
    with pytest.raises(ValidationError, match="0x"):
        BlockchainTransactionData.model_validate(make_transaction(tx_hash=ETH_HASH), context=context)


def test_coin_of_unknown_family_without_context_accepts_both_hash_forms():
    for value in (ETH_HASH, BTC_HASH):
        block = BlockchainBlockData.model_validate(make_block(coin_symbol="XYZ", hash=value), context=AT_NOW)
        assert block.hash == value


# The chain's rules hold from the record's own coin_symbol, with no validation context at all (a caller's
# dicts, a benchmark, a replay): an ETH hash without 0x is refused, a BTC hash with one too.


@pytest.mark.parametrize(
    ("coin", "bad", "rule"),
    [
        ("ETH", "ab" * 32, "Ethereum hashes are 0x-prefixed"),
        ("eth", "ab" * 32, "Ethereum hashes are 0x-prefixed"),
        ("BTC", ETH_HASH, "Bitcoin-like hashes have no 0x prefix"),
        ("DOGE", ETH_HASH, "Bitcoin-like hashes have no 0x prefix"),
    ],
)
def test_chain_hash_rules_hold_from_the_coin_symbol_without_context(coin, bad, rule):
    with pytest.raises(ValidationError, match=rule) as caught:
        BlockchainBlockData.model_validate(make_block(coin_symbol=coin, hash=bad))
    assert error_fields(caught.value) == {"hash"}  # located on the field, like every other rule
    with pytest.raises(ValidationError, match=rule) as caught:
        BlockchainTransactionData.model_validate(
            make_transaction(coin_symbol=coin, tx_hash=bad, sender=None, recipient=None)
        )
    assert error_fields(caught.value) == {"tx_hash"}


def test_chain_hash_rules_accept_each_chains_own_form_without_context():
    assert BlockchainBlockData.model_validate(make_block(coin_symbol="ETH", hash=ETH_HASH)).hash == ETH_HASH
    assert BlockchainBlockData.model_validate(make_block(coin_symbol="BTC", hash=BTC_HASH)).hash == BTC_HASH
    tx = BlockchainTransactionData.model_validate(make_transaction(coin_symbol="ETH", tx_hash=ETH_HASH))
    assert tx.tx_hash == ETH_HASH


def test_context_family_is_the_authority_over_the_coin_symbol():
    # coin_metadata's chain_family (passed by the parsers) decides for a coin configured unusually.
    block = BlockchainBlockData.model_validate(
        make_block(coin_symbol="BTC", hash=ETH_HASH), context={**AT_NOW, "family": "ethereum"}
    )
    assert block.hash == ETH_HASH
    with pytest.raises(ValidationError, match="0x-prefixed"):
        BlockchainBlockData.model_validate(
            make_block(coin_symbol="XYZ", hash=BTC_HASH), context={**AT_NOW, "family": "ethereum"}
        )


def test_chain_rule_reject_reason_and_record_error_name_the_field():
    with pytest.raises(ValidationError) as caught:
        BlockchainBlockData.model_validate(make_block(coin_symbol="ETH", hash="cd" * 32))
    text = describe_validation_error(caught.value)
    assert text.startswith("hash='cdcd")
    assert "0x-prefixed" in text


# ---------------------------------------------------------------------- amounts and counts


@pytest.mark.parametrize(
    "field",
    ["block_id", "transaction_count", "size", "output_total", "fee_total", "reward", "gas_used"],
)
def test_block_amounts_and_counts_must_not_be_negative(field):
    with pytest.raises(ValidationError) as caught:
        BlockchainBlockData.model_validate(make_block(**{field: -1}), context=AT_NOW)
    assert error_fields(caught.value) == {field}
    zero = BlockchainBlockData.model_validate(make_block(**{field: 0}), context=AT_NOW)
    assert getattr(zero, field) == 0


@pytest.mark.parametrize("field", ["difficulty", "output_total_usd", "fee_total_usd", "reward_usd"])
def test_block_decimals_must_not_be_negative(field):
    with pytest.raises(ValidationError) as caught:
        BlockchainBlockData.model_validate(make_block(**{field: Decimal("-0.01")}), context=AT_NOW)
    assert error_fields(caught.value) == {field}


@pytest.mark.parametrize(
    "field",
    ["block_id", "fee", "input_total", "output_total", "value", "input_count", "output_count", "size"],
)
def test_transaction_amounts_and_counts_must_not_be_negative(field):
    with pytest.raises(ValidationError) as caught:
        BlockchainTransactionData.model_validate(make_transaction(**{field: -5}), context=AT_NOW)
    assert error_fields(caught.value) == {field}


@pytest.mark.parametrize("field", ["balance", "received", "spent", "transaction_count", "balance_usd"])
def test_address_amounts_must_not_be_negative(field):
    with pytest.raises(ValidationError) as caught:
        BlockchainAddressData.model_validate(make_address(**{field: -1}), context=AT_NOW)
    assert error_fields(caught.value) == {field}


def test_amounts_far_above_int64_are_kept_exactly():
    block = BlockchainBlockData.model_validate(make_block(), context=AT_NOW)
    assert block.output_total == 2**64 * 1000 + 12345
    assert block.fee_total == 10**30 + 7


# ---------------------------------------------------------------------- times


def test_time_up_to_two_hours_ahead_is_accepted():
    edge = NOW + timedelta(hours=2)
    assert BlockchainBlockData.model_validate(make_block(time=edge), context=AT_NOW).time == edge


@pytest.mark.parametrize("ahead", [timedelta(hours=2, seconds=1), timedelta(days=1), timedelta(days=3650)])
def test_time_beyond_two_hours_ahead_is_rejected(ahead):
    future = NOW + ahead
    with pytest.raises(ValidationError, match="future") as caught:
        BlockchainBlockData.model_validate(make_block(time=future), context=AT_NOW)
    assert error_fields(caught.value) == {"time"}
    with pytest.raises(ValidationError, match="future"):
        BlockchainTransactionData.model_validate(make_transaction(time=future), context=AT_NOW)
    with pytest.raises(ValidationError, match="future"):
        BlockchainAddressData.model_validate(make_address(last_seen=future), context=AT_NOW)


def test_future_check_uses_the_real_clock_without_context():
    with pytest.raises(ValidationError, match="future"):
        BlockchainBlockData.model_validate(make_block(time=datetime.now(UTC) + timedelta(hours=3)))
    recent = datetime.now(UTC) - timedelta(minutes=1)
    assert BlockchainBlockData.model_validate(make_block(time=recent)).time == recent


def test_times_are_normalised_to_utc():
    india = timezone(timedelta(hours=5, minutes=30))
    local = datetime(2024, 6, 1, 15, 0, 0, 654321, tzinfo=india)
    block = BlockchainBlockData.model_validate(make_block(time=local), context=AT_NOW)
    assert block.time == local
    assert block.time.tzinfo == UTC
    assert block.time == datetime(2024, 6, 1, 9, 30, 0, 654321, tzinfo=UTC)
    naive = BlockchainBlockData.model_validate(make_block(time=datetime(2024, 6, 1, 9)), context=AT_NOW)
    assert naive.time == datetime(2024, 6, 1, 9, tzinfo=UTC)


def test_future_check_compares_instants_not_wall_clocks():
    # 13:30 at UTC-3 is 16:30 UTC: 4.5 h ahead of NOW although its wall clock is only 1.5 h ahead.
    ahead = datetime(2024, 6, 1, 13, 30, tzinfo=timezone(timedelta(hours=-3)))
    with pytest.raises(ValidationError, match="future"):
        BlockchainBlockData.model_validate(make_block(time=ahead), context=AT_NOW)


def test_price_date_must_not_be_after_today():
    today = MarketPriceData.model_validate(make_price(price_date=NOW.date()), context=AT_NOW)
    assert today.price_date == NOW.date()
    with pytest.raises(ValidationError, match="future") as caught:
        MarketPriceData.model_validate(make_price(price_date=NOW.date() + timedelta(days=1)), context=AT_NOW)
    assert error_fields(caught.value) == {"price_date"}


# ---------------------------------------------------------------------- prices


@pytest.mark.parametrize("bad", [Decimal(0), Decimal("-0.01"), Decimal("-67000"), 0, "0"])
def test_price_must_be_positive(bad):
    with pytest.raises(ValidationError) as caught:
        MarketPriceData.model_validate(make_price(price_usd=bad), context=AT_NOW)
    assert error_fields(caught.value) == {"price_usd"}


@pytest.mark.parametrize("tiny", [Decimal("0.000000001234"), Decimal("1E-12")])
def test_tiny_positive_prices_are_kept_exactly(tiny):
    price = MarketPriceData.model_validate(make_price(price_usd=tiny), context=AT_NOW)
    assert price.price_usd == tiny


@pytest.mark.parametrize("zero", [0, "0", Decimal(0), Decimal("0.00"), 0.0])
@pytest.mark.parametrize("field", ["volume_usd", "market_cap_usd"])
def test_zero_volume_or_market_cap_means_unknown(field, zero):
    price = MarketPriceData.model_validate(make_price(**{field: zero}), context=AT_NOW)
    assert getattr(price, field) is None


@pytest.mark.parametrize("field", ["volume_usd", "market_cap_usd"])
def test_volume_and_market_cap_keep_real_values_and_refuse_negatives(field):
    value = Decimal("16408802301.8374")
    price = MarketPriceData.model_validate(make_price(**{field: value}), context=AT_NOW)
    assert getattr(price, field) == value
    assert (
        MarketPriceData.model_validate(make_price(**{field: None}), context=AT_NOW).model_dump()[field]
        is None
    )
    with pytest.raises(ValidationError) as caught:
        MarketPriceData.model_validate(make_price(**{field: Decimal("-1")}), context=AT_NOW)
    assert error_fields(caught.value) == {field}


# ---------------------------------------------------------------------- Ethereum addresses


def test_ethereum_sender_and_recipient_are_lowercased():
    tx = BlockchainTransactionData.model_validate(
        make_transaction(sender=ETH_SENDER.upper().replace("0X", "0x"), recipient=ETH_RECIPIENT.upper()),
        context=AT_NOW,
    )
    assert tx.sender == ETH_SENDER
    assert tx.recipient == ETH_RECIPIENT


@pytest.mark.parametrize(
    "bad",
    [
        "1f" * 20,
        "0x" + "1f" * 19,
        "0x" + "1f" * 21,
        "0x" + "zz" * 20,
        "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh",
    ],
)
@pytest.mark.parametrize("field", ["sender", "recipient"])
def test_ethereum_sender_and_recipient_must_be_0x_40_hex(field, bad):
    with pytest.raises(ValidationError) as caught:
        BlockchainTransactionData.model_validate(make_transaction(**{field: bad}), context=AT_NOW)
    assert error_fields(caught.value) == {field}


def test_bitcoin_like_transactions_have_no_sender_or_recipient():
    tx = BlockchainTransactionData.model_validate(
        make_transaction(coin_symbol="BTC", tx_hash=BTC_HASH, sender=None, recipient=None, value=None),
        context={**AT_NOW, "family": "bitcoin"},
    )
    assert tx.sender is None
    assert tx.recipient is None
    assert tx.is_coinbase is False


# ---------------------------------------------------------------------- error description


def test_describe_validation_error_names_field_and_value():
    with pytest.raises(ValidationError) as caught:
        MarketPriceData.model_validate(make_price(price_usd=Decimal("-3.5")), context=AT_NOW)
    text = describe_validation_error(caught.value)
    assert "price_usd" in text
    assert "-3.5" in text


def test_describe_validation_error_lists_every_problem():
    with pytest.raises(ValidationError) as caught:
        BlockchainBlockData.model_validate(
            make_block(hash="nothex", fee_total=-42, time=NOW + timedelta(days=2)), context=AT_NOW
        )
    text = describe_validation_error(caught.value)
    for expected in ("hash", "'nothex'", "fee_total", "-42", "time", "future"):
        assert expected in text
    assert text.count(";") == 2


def test_describe_validation_error_names_a_missing_field():
    values = make_block()
    del values["hash"]
    with pytest.raises(ValidationError) as caught:
        BlockchainBlockData.model_validate(values, context=AT_NOW)
    assert "hash" in describe_validation_error(caught.value)


def test_describe_validation_error_shortens_huge_values():
    with pytest.raises(ValidationError) as caught:
        BlockchainBlockData.model_validate(make_block(hash="z" * 5000), context=AT_NOW)
    text = describe_validation_error(caught.value)
    assert text.startswith("hash=")
    assert len(text) < 400


# ---------------------------------------------------------------------- result models


def test_upsert_results_add_up():
    total = UpsertResult(inserted=2, updated=1) + UpsertResult(inserted=1, unchanged=4)
    assert total == UpsertResult(inserted=3, updated=1, unchanged=4)
    assert total.total == 8


def test_upsert_results_carry_rejects_and_counts_leave_them_out():
    first = UpsertResult(inserted=2, rejects=[Reject("hash taken", {"block_id": 1})])
    second = UpsertResult(updated=1, rejects=[Reject("check failed", {"block_id": 2})])
    total = first + second
    assert [r.reason for r in total.rejects] == ["hash taken", "check failed"]
    assert (total.total, total.rejected) == (3, 2)
    assert total.counts() == UpsertResult(inserted=2, updated=1)
    assert total != UpsertResult(inserted=2, updated=1)  # rejects are part of what a write did


def test_date_coverage_counts_missing_days():
    coverage = DateCoverage(
        coin_id="bitcoin", first_date=date(2024, 1, 1), last_date=date(2024, 1, 10), days=7
    )
    assert coverage.missing_days == 3
    assert DateCoverage(coin_id="x", first_date=None, last_date=None, days=0).missing_days == 0


def test_health_status_with_error_is_not_ok():
    assert HealthStatus(ok=True, dialect="sqlite", latency_ms=1.0, error="OperationalError").ok is False
    assert HealthStatus(ok=True, dialect="sqlite", latency_ms=1.0).ok is True
