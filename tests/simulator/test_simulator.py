"""Tests of the local Blockchair/CoinGecko simulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from pipeline.simulator import FaultRule, Simulator, SimulatorConfig, SimulatorControl
from tests.support.fixtures import load_fixture

DAY = 86_400


def fixture(name: str) -> Any:
    """A saved reply decoded as `requests` decodes the simulator's (floats as float)."""
    return load_fixture(name, parse_float=float)


def make_sim(**overrides: Any) -> Simulator:
    options: dict[str, Any] = {"tip_growth": False, "coingecko_plan": "pro"}
    options.update(overrides)
    return Simulator(SimulatorConfig(**options)).start()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = make_sim()
    yield simulator
    simulator.stop()


def get(sim: Simulator, path: str, timeout: float = 10.0, **params: Any) -> requests.Response:
    return requests.get(sim.base_url + path, params=params, timeout=timeout)


def cg_range(sim: Simulator, coin: str, start: float, end: float, **extra: Any) -> requests.Response:
    params = {"vs_currency": "usd", "from": int(start), "to": int(end), **extra}
    return get(sim, f"/api/v3/coins/{coin}/market_chart/range", **params)


# ---------------------------------------------------------------- Blockchair envelopes and fields


@pytest.mark.parametrize(
    ("path", "sample", "params"),
    [
        ("/bitcoin/blocks", "bitcoin_blocks_docs_example.json", {"limit": 1}),
        ("/ethereum/blocks", "ethereum_blocks_docs_example.json", {"limit": 1}),
        ("/bitcoin/transactions", "bitcoin_transactions_docs_example.json", {"limit": 1}),
        ("/ethereum/transactions", "ethereum_transactions_docs_example.json", {"limit": 2}),
    ],
)
def test_row_envelopes_match_fixtures(sim: Simulator, path: str, sample: str, params: dict) -> None:
    expected = fixture(f"blockchair/{sample}")
    body = get(sim, path, **params).json()
    assert set(expected) == set(body)
    assert set(expected["context"]) <= set(body["context"])
    assert {"cache", "api", "servers", "request_cost", "market_price_usd", "source"} <= set(body["context"])
    assert set(expected["data"][0]) <= set(body["data"][0])
    assert body["context"]["code"] == 200
    assert body["context"]["limit"] == params["limit"]
    assert body["context"]["rows"] == len(body["data"]) == params["limit"]


def test_stats_envelope(sim: Simulator) -> None:
    body = get(sim, "/bitcoin/stats").json()
    tip = sim.tip("bitcoin")
    assert set(fixture("blockchair/bitcoin_testnet_stats.json")["data"]) <= set(body["data"])
    assert body["data"]["blocks"] == tip + 1
    assert body["data"]["best_block_height"] == body["context"]["state"] == tip
    assert body["data"]["best_block_hash"] == sim.expected_block("bitcoin", tip)["hash"]


def test_unknown_chain_and_endpoint_give_404_envelope(sim: Simulator) -> None:
    for path in ("/monero/blocks", "/bitcoin/nothing"):
        response = get(sim, path)
        assert response.status_code == 404
        assert response.json()["data"] is None
        assert response.json()["context"]["code"] == 404
        assert "state" not in response.json()["context"]


def test_block_rows_are_deterministic_and_well_formed(sim: Simulator) -> None:
    tip = sim.tip("bitcoin")
    rows = get(sim, "/bitcoin/blocks", q=f"id({tip - 20}..)", s="id(asc)", limit=100).json()["data"]
    times = [datetime.strptime(r["time"], "%Y-%m-%d %H:%M:%S") for r in rows]
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    assert all(len(r["hash"]) == 64 and int(r["hash"], 16) >= 0 for r in rows)
    assert rows == [sim.expected_block("bitcoin", h) for h in range(tip - 20, tip + 1)]
    eth = get(sim, "/ethereum/blocks", limit=5).json()["data"]
    assert all(r["hash"].startswith("0x") and len(r["hash"]) == 66 for r in eth)
    assert all(r["gas_used"] <= r["gas_limit"] for r in eth)
    with make_sim(anchor_time=sim.anchor_time) as other:
        assert other.expected_block("dogecoin", 123_456) == sim.expected_block("dogecoin", 123_456)


# ---------------------------------------------------------------- Blockchair paging and filters


def test_blocks_paging_by_id_is_contiguous_and_capped_at_tip(sim: Simulator) -> None:
    tip = sim.tip("litecoin")
    seen: list[int] = []
    start = tip - 250
    while True:
        body = get(sim, "/litecoin/blocks", q=f"id({start}..)", s="id(asc)", limit=100).json()
        if not body["data"]:
            break
        seen.extend(r["id"] for r in body["data"])
        start = body["data"][-1]["id"] + 1
    assert seen == list(range(tip - 250, tip + 1))
    body = get(sim, "/litecoin/blocks", q=f"id({tip - 5}..{tip + 50})").json()
    assert body["context"]["total_rows"] == 6
    assert [r["id"] for r in body["data"]] == list(range(tip, tip - 6, -1))  # default sort id(desc)


def test_blocks_filter_syntax(sim: Simulator) -> None:
    def ids(q: str, **extra: Any) -> list[int]:
        return [r["id"] for r in get(sim, "/bitcoin/blocks", q=q, s="id(asc)", **extra).json()["data"]]

    assert ids("id(100..103)") == [100, 101, 102, 103]
    assert ids("id(100...103)") == [100, 101, 102]
    assert ids("id(500)") == [500]
    assert ids("id(..2)") == [0, 1, 2]
    assert ids("id(100..200),id(150..152)") == [150, 151, 152]
    assert ids("id(100..200)", limit=3, offset=5) == [105, 106, 107]


def test_blocks_bad_parameters_give_400(sim: Simulator) -> None:
    for params in ({"limit": 101}, {"offset": 10_001}, {"q": "id(abc)"}, {"q": "size(5)"}, {"s": "id(up)"}):
        response = get(sim, "/bitcoin/blocks", **params)
        assert response.status_code == 400, params
        assert response.json()["context"]["code"] == 400
        assert response.json()["context"]["error"]


def test_nothing_matching_gives_empty_list(sim: Simulator) -> None:
    tip = sim.tip("bitcoin")
    body = get(sim, "/bitcoin/blocks", q=f"id({tip + 1}..)").json()
    assert body["data"] == []
    assert body["context"]["rows"] == 0
    assert body["context"]["total_rows"] == 0
    body = get(sim, "/bitcoin/transactions", q=f"block_id({tip + 1}..)").json()
    assert body["data"] == []


def test_transaction_counts_and_fee_totals_match_blocks(sim: Simulator) -> None:
    tip = sim.tip("bitcoin")
    for height in range(tip - 4, tip + 1):
        block = sim.expected_block("bitcoin", height)
        body = get(sim, "/bitcoin/transactions", q=f"block_id({height})", s="id(asc)", limit=100).json()
        txs = body["data"]
        assert len(txs) == block["transaction_count"] == body["context"]["total_rows"]
        assert sum(t["fee"] for t in txs) == block["fee_total"]
        assert block["reward"] == block["generation"] + block["fee_total"]
        assert block["input_total"] + block["generation"] == block["output_total"]
        assert txs[0]["is_coinbase"]
        assert txs[0]["fee"] == 0
        assert txs[0]["input_total"] == 0
        assert not any(t["is_coinbase"] for t in txs[1:])
        assert [t["id"] for t in txs] == [height * 1_000_000 + i for i in range(len(txs))]
        assert txs == sim.expected_transactions("bitcoin", height)


def test_transaction_id_paging_walks_every_transaction_once() -> None:
    with make_sim(tx_per_block=(30, 70)) as sim:
        tip = sim.tip("ethereum")
        lo = tip - 9
        expected = [t["hash"] for h in range(lo, tip + 1) for t in sim.expected_transactions("ethereum", h)]
        got: list[str] = []
        q_from = 0
        total = None
        while True:
            q = f"block_id({lo}..{tip}),id({q_from}..)"
            body = get(sim, "/ethereum/transactions", q=q, s="id(asc)", limit=100).json()
            if total is None:
                total = body["context"]["total_rows"]
            if not body["data"]:
                break
            got.extend(t["hash"] for t in body["data"])
            q_from = body["data"][-1]["id"] + 1
        assert got == expected
        assert total == len(expected)
        q = f"block_id({lo}..{tip})"
        page = get(sim, "/ethereum/transactions", q=q, s="id(desc)", limit=100, offset=7)
        assert [t["hash"] for t in page.json()["data"]] == expected[::-1][7:107]


def test_ethereum_amounts_are_wei_strings() -> None:
    with make_sim(tx_per_block=(20, 20)) as sim:
        tip = sim.tip("ethereum")
        txs = get(sim, "/ethereum/transactions", q=f"block_id({tip - 4}..{tip})", limit=100).json()["data"]
        blocks = get(sim, "/ethereum/blocks", q=f"id({tip - 4}..{tip})").json()["data"]
    values = [int(t["value"]) for t in txs]
    assert all(isinstance(t["value"], str) and isinstance(t["fee"], str) for t in txs)
    assert any(v > 2**64 for v in values)
    assert "0" in [t["value"] for t in txs]
    assert all(t["gas_used"] <= t["gas_limit"] for t in txs)
    assert all(t["sender"].startswith("0x") and len(t["sender"]) == 42 for t in txs)
    for block in blocks:
        for key in ("value_total", "fee_total", "generation", "reward"):
            assert isinstance(block[key], str)
        assert int(block["reward"]) == int(block["generation"]) + int(block["fee_total"])
        mine = [t for t in txs if t["block_id"] == block["id"]]
        assert int(block["fee_total"]) == sum(int(t["fee"]) for t in mine)
    assert any(int(b["value_total"]) > 2**64 for b in blocks)


# ---------------------------------------------------------------- Blockchair address dashboards

GOOD = [
    "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
    "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
    "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
]


def test_addresses_dashboard(sim: Simulator) -> None:
    wanted = [*GOOD, "0OIl-not-an-address"]
    body = get(sim, "/bitcoin/dashboards/addresses/" + ",".join(wanted)).json()
    assert body["context"]["limit"] == "100,100"
    assert body["context"]["results"] == 3
    assert body["context"]["state"] == sim.tip("bitcoin")
    data = body["data"]
    assert set(data) == {"set", "addresses", "transactions", "utxo"}
    assert list(data["addresses"]) == GOOD
    keys = set(fixture("blockchair/bitcoin_testnet_address_dashboard.json")["data"].popitem()[1]["address"])
    for info in data["addresses"].values():
        assert keys <= set(info)
        assert info["balance"] == info["received"] - info["spent"] >= 0
    assert data["set"]["balance"] == sum(i["balance"] for i in data["addresses"].values())
    assert data["addresses"]["bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"]["type"] == "witness_v0_keyhash"
    again = get(sim, "/bitcoin/dashboards/addresses/" + ",".join(wanted)).json()["data"]

    def native(section: dict[str, Any]) -> dict[str, Any]:
        # USD values follow the simulated live price, which may tick between the two calls (as the real
        # API's do); the on-chain state must be identical.
        return {key: value for key, value in section.items() if not key.endswith("_usd")}

    assert native(again["set"]) == native(data["set"])
    assert {a: native(i) for a, i in again["addresses"].items()} == {
        a: native(i) for a, i in data["addresses"].items()
    }


def test_addresses_dashboard_edge_cases(sim: Simulator) -> None:
    body = get(sim, "/bitcoin/dashboards/addresses/nope,0OIl").json()
    assert body["data"] == []
    assert body["context"]["results"] == 0
    assert get(sim, "/ethereum/dashboards/addresses/0x" + "1" * 40).status_code == 400
    too_many = ",".join(f"1BvBMSEYstWetqTFn5Au4m4GFg7xJa{i:04d}".replace("0", "z") for i in range(101))
    assert get(sim, "/bitcoin/dashboards/addresses/" + too_many).status_code == 400


def test_single_address_dashboards(sim: Simulator) -> None:
    btc = get(sim, f"/dogecoin/dashboards/address/{GOOD[0]}").json()
    assert btc["context"]["limit"] == "100,100"
    entry = btc["data"][GOOD[0]]
    assert set(entry) == {"address", "transactions", "utxo"}
    assert all(isinstance(h, str) for h in entry["transactions"])
    assert sum(u["value"] for u in entry["utxo"]) == entry["address"]["balance"]
    address = "0x" + "Ab" * 20
    eth = get(sim, f"/ethereum/dashboards/address/{address}").json()
    info = eth["data"][address]["address"]
    assert info["type"] == "account"
    for key in ("balance", "received_approximate", "spent_approximate"):
        assert isinstance(info[key], str)
        assert int(info[key]) >= 0
    assert {"transaction_count", "call_count", "first_seen_receiving", "last_seen_spending"} <= set(info)
    assert "calls" in eth["data"][address]
    assert get(sim, "/ethereum/dashboards/address/0x123").json()["data"] == []


# ---------------------------------------------------------------- CoinGecko


def test_market_chart_range_daily_points_and_now_point(sim: Simulator) -> None:
    now = time.time()
    body = cg_range(sim, "bitcoin", now - 200 * DAY, now + 60).json()
    assert set(body) == set(fixture("coingecko/market_chart_range_docs_example.json"))
    stamps = [p[0] for p in body["prices"]]
    assert all(ms % (DAY * 1000) == 0 for ms in stamps[:-1])
    assert stamps[-1] % (DAY * 1000) != 0
    assert abs(stamps[-1] / 1000 - now) < 30
    assert stamps == sorted(stamps)
    assert len(stamps) in (201, 202)
    assert all(1_000 < p[1] < 10_000_000 for p in body["prices"])
    ended = cg_range(sim, "bitcoin", now - 200 * DAY, now - 100 * DAY).json()
    assert all(p[0] % (DAY * 1000) == 0 for p in ended["prices"])


def test_market_chart_values_do_not_depend_on_range(sim: Simulator) -> None:
    now = time.time()
    wide = cg_range(sim, "dogecoin", now - 300 * DAY, now - 10 * DAY).json()
    narrow = cg_range(sim, "dogecoin", now - 120 * DAY, now - 20 * DAY, interval="daily").json()
    wide_prices = dict(map(tuple, wide["prices"]))
    assert narrow["prices"]
    assert all(wide_prices[ms] == value for ms, value in narrow["prices"])
    start = datetime.fromtimestamp(wide["prices"][0][0] / 1000, UTC).date()
    expected = sim.expected_daily_prices("dogecoin", start, start + timedelta(days=9))
    assert [(d, p) for d, p, _, _ in expected] == [
        (datetime.fromtimestamp(ms / 1000, UTC).date(), v) for ms, v in wide["prices"][:10]
    ]
    assert all(0.001 < p < 5 for _, p, _, _ in expected)


def test_market_chart_hourly_for_short_ranges(sim: Simulator) -> None:
    now = time.time()
    body = cg_range(sim, "ethereum", now - 10 * DAY, now - 5 * DAY).json()
    stamps = [p[0] for p in body["prices"]]
    assert len(stamps) in (120, 121)
    assert {b - a for a, b in zip(stamps, stamps[1:], strict=False)} == {3_600_000}
    daily = dict(
        map(
            tuple, cg_range(sim, "ethereum", now - 10 * DAY, now - 5 * DAY, interval="daily").json()["prices"]
        )
    )
    assert all(dict(map(tuple, body["prices"]))[ms] == v for ms, v in daily.items())


def test_market_chart_quirks_over_long_range(sim: Simulator) -> None:
    body = cg_range(sim, "bitcoin", 1_300_000_000, time.time() - DAY).json()
    assert body["prices"][0][0] == 1_367_107_200_000  # 2013-04-28, the first BTC day
    assert any(v is None for _, v in body["market_caps"])
    assert len(body["market_caps"]) < len(body["prices"]) == len(body["total_volumes"])
    expected = sim.expected_daily_prices("bitcoin", date(2013, 1, 1), date(2015, 1, 1))
    caps = dict(map(tuple, body["market_caps"]))
    for day, _, cap, volume in expected:
        ms = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000
        assert caps.get(ms) == cap
        assert volume is not None


def test_market_chart_errors(sim: Simulator) -> None:
    now = time.time()
    missing = get(sim, "/api/v3/coins/bitcoin/market_chart/range", vs_currency="usd", to=int(now))
    assert missing.status_code == 422
    assert "Missing parameter" in missing.json()["error"]
    backwards = cg_range(sim, "bitcoin", now, now - DAY)
    assert backwards.status_code == 422
    assert backwards.json() == {"error": "invalid from/to"}
    unknown = cg_range(sim, "notacoin", now - DAY, now)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "coin not found"}


def test_history_endpoint(sim: Simulator) -> None:
    body = get(sim, "/api/v3/coins/bitcoin/history", date="30-12-2017", localization="false").json()
    day, price, cap, volume = sim.expected_daily_prices("bitcoin", date(2017, 12, 30), date(2017, 12, 30))[0]
    assert {"id", "symbol", "name", "market_data"} <= set(body)
    assert body["market_data"]["current_price"]["usd"] == price
    assert body["market_data"]["market_cap"]["usd"] == cap
    assert body["market_data"]["total_volume"]["usd"] == volume
    early = get(sim, "/api/v3/coins/ethereum/history", date="01-01-2015")
    assert early.status_code == 200
    assert "market_data" not in early.json()
    bad = get(sim, "/api/v3/coins/bitcoin/history", date="2017-12-30")
    assert bad.status_code == 400
    assert bad.json() == {"error": "invalid date"}
    missing = get(sim, "/api/v3/coins/bitcoin/history")
    assert missing.status_code == 422
    assert missing.json() == fixture("coingecko/error_422_missing_date.json")


def test_public_plan_refuses_old_data_but_pro_does_not() -> None:
    now = time.time()
    with make_sim(coingecko_plan="public") as public:
        old = cg_range(public, "bitcoin", now - 400 * DAY, now - 300 * DAY)
        assert old.status_code == 401
        assert old.json()["error"]["status"]["error_code"] == 10012
        assert set(old.json()) == set(fixture("coingecko/error_10012_time_range.json"))
        assert cg_range(public, "bitcoin", now - 365 * DAY, now).status_code == 200
        assert get(public, "/api/v3/coins/bitcoin/history", date="30-12-2017").status_code == 401
    with make_sim(coingecko_plan="pro") as pro:
        assert cg_range(pro, "bitcoin", now - 400 * DAY, now - 300 * DAY).status_code == 200


def test_simple_price_and_ping(sim: Simulator) -> None:
    body = get(sim, "/api/v3/simple/price", ids="bitcoin, dash,unknown", vs_currencies="usd").json()
    assert set(body) == {"bitcoin", "dash"}
    assert body["bitcoin"]["usd"] > 1000
    assert get(sim, "/api/v3/simple/price", ids="bitcoin", vs_currencies="xyz").json() == {"bitcoin": {}}
    assert get(sim, "/api/v3/ping").json() == {"gecko_says": "(V3) To the Moon!"}


# ---------------------------------------------------------------- keys and rate limits


def test_api_keys_are_checked() -> None:
    with make_sim(blockchair_key="bc-secret", coingecko_key="cg-secret", coingecko_plan="demo") as sim:
        refused = get(sim, "/bitcoin/stats")
        assert refused.status_code == 402
        assert refused.json()["context"]["code"] == 402
        assert refused.json()["data"] is None
        assert refused.json()["context"]["error"]
        assert get(sim, "/bitcoin/stats", key="wrong").status_code == 402
        assert get(sim, "/bitcoin/stats", key="bc-secret").status_code == 200
        cg = get(sim, "/api/v3/ping")
        assert cg.status_code == 401
        assert cg.json()["status"]["error_code"] == 10002
        headers = {"x-cg-demo-api-key": "cg-secret"}
        assert requests.get(sim.coingecko_url + "/ping", headers=headers, timeout=5).status_code == 200
        pro_header = {"x-cg-pro-api-key": "cg-secret"}
        assert requests.get(sim.coingecko_url + "/ping", headers=pro_header, timeout=5).status_code == 401
    with make_sim(coingecko_key="cg-secret", coingecko_plan="pro") as sim:
        pro_header = {"x-cg-pro-api-key": "cg-secret"}
        assert requests.get(sim.coingecko_url + "/ping", headers=pro_header, timeout=5).status_code == 200


def test_rate_limit_per_api() -> None:
    with make_sim(rate_limit_per_minute=3) as sim:
        assert [get(sim, "/bitcoin/stats").status_code for _ in range(3)] == [200, 200, 200]
        limited = get(sim, "/bitcoin/stats")
        assert limited.status_code == 429
        assert limited.json()["context"]["code"] == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert get(sim, "/api/v3/ping").status_code == 200
        for _ in range(2):
            get(sim, "/api/v3/ping")
        cg = get(sim, "/api/v3/ping")
        assert cg.status_code == 429
        assert cg.json() == fixture("coingecko/error_429.json")
        assert "Retry-After" in cg.headers


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize("kind", ["429", "500", "503", "401", "402"])
def test_status_faults_use_each_api_shape(sim: Simulator, kind: str) -> None:
    sim.add_fault(FaultRule(kind, endpoint="blocks", retry_after=7))
    sim.add_fault(FaultRule(kind, endpoint="coingecko", retry_after=7))
    bc = get(sim, "/bitcoin/blocks")
    assert bc.status_code == int(kind)
    assert bc.json()["data"] is None
    assert bc.json()["context"]["code"] == int(kind)
    cg = get(sim, "/api/v3/ping")
    assert cg.status_code == int(kind)
    if kind == "429":
        assert bc.headers["Retry-After"] == cg.headers["Retry-After"] == "7"
        assert cg.json() == fixture("coingecko/error_429.json")
    elif kind == "500":
        assert cg.json() == fixture("coingecko/error_500.json")
    elif kind in ("401", "402"):
        assert cg.json()["status"]["error_code"] == 10002
        assert bc.json()["context"]["error"] == "Invalid API key"
    assert get(sim, "/bitcoin/blocks").status_code == 200  # times=1 by default


def test_timeout_slow_and_reset_faults(sim: Simulator) -> None:
    sim.add_fault(FaultRule("timeout", endpoint="stats", delay=1.0))
    with pytest.raises(requests.Timeout):
        get(sim, "/bitcoin/stats", timeout=0.2)
    sim.add_fault(FaultRule("slow", endpoint="stats", delay=0.3))
    started = time.monotonic()
    assert get(sim, "/bitcoin/stats").status_code == 200
    assert time.monotonic() - started >= 0.3
    sim.add_fault(FaultRule("reset", endpoint="market_chart_range"))
    with pytest.raises(requests.ConnectionError):
        cg_range(sim, "bitcoin", time.time() - 5 * DAY, time.time())
    assert cg_range(sim, "bitcoin", time.time() - 5 * DAY, time.time()).status_code == 200


def test_trickle_fault_sends_the_normal_body_a_byte_at_a_time(sim: Simulator) -> None:
    normal = get(sim, "/api/v3/ping").content
    sim.add_fault(FaultRule("trickle", endpoint="ping", delay=0.02))
    # Every byte comes well within a 1 s read timeout, yet the body takes longer than that in all.
    with requests.get(sim.coingecko_url + "/ping", timeout=(5, 1), stream=True) as response:
        assert response.headers["Content-Length"] == str(len(normal))
        first = response.raw.read(1)
        started = time.monotonic()
        rest = response.raw.read()
    assert first + rest == normal
    assert time.monotonic() - started >= (len(normal) - 1) * 0.02


def test_endless_fault_never_ends_and_huge_fault_declares_its_size(sim: Simulator) -> None:
    sim.add_fault(FaultRule("endless", endpoint="stats"))
    with requests.get(sim.base_url + "/bitcoin/stats", timeout=5, stream=True) as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        received = 0
        for piece in response.iter_content(65536):
            received += len(piece)
            if received > 8 * 1024 * 1024:
                break  # far beyond any real page, and still going
    assert received > 8 * 1024 * 1024

    sim.add_fault(FaultRule("huge", endpoint="stats", size=3_000_000))
    response = get(sim, "/bitcoin/stats")
    assert response.headers["Content-Length"] == "3000000"
    assert len(response.content) == 3_000_000
    assert response.json() == {"data": [0]}  # whitespace padding keeps it valid JSON
    sim.add_fault(FaultRule("huge", endpoint="stats"))  # 200 MiB by default: only look at the headers
    with requests.get(sim.base_url + "/bitcoin/stats", timeout=5, stream=True) as response:
        assert response.headers["Content-Length"] == str(200 * 1024 * 1024)
    assert get(sim, "/bitcoin/stats").json()["data"]  # rules fire once by default; the server is fine


def test_stream_fault_rules_round_trip_through_the_control_api(sim: Simulator) -> None:
    control = SimulatorControl(sim.base_url)
    control.add_fault({"kind": "huge", "endpoint": "blocks", "size": 1234, "times": None})
    control.add_fault(FaultRule("trickle", endpoint="ping", delay=0.5))
    rules = control.stats()["faults"]
    assert [(r["kind"], r["size"], r["delay"]) for r in rules] == [
        ("huge", 1234, 5.0),
        ("trickle", 200 * 1024 * 1024, 0.5),
    ]
    with pytest.raises(ValueError, match="delay and size"):
        FaultRule("huge", size=-1)


def test_malformed_and_html_faults(sim: Simulator) -> None:
    sim.add_fault(FaultRule("malformed_json", endpoint="transactions"))
    response = get(sim, "/bitcoin/transactions")
    assert response.status_code == 200
    with pytest.raises(ValueError, match="."):
        response.json()
    sim.add_fault(FaultRule("html", endpoint="history"))
    page = get(sim, "/api/v3/coins/bitcoin/history", date="01-01-2020")
    assert page.status_code == 502
    assert page.headers["Content-Type"].startswith("text/html")
    assert "<html" in page.text


def test_data_faults_on_blockchair(sim: Simulator) -> None:
    sim.add_fault(FaultRule("missing_field", endpoint="blocks"))
    rows = get(sim, "/bitcoin/blocks", limit=3).json()["data"]
    assert "hash" not in rows[0]
    assert all("hash" in r for r in rows[1:])
    assert "hash" in get(sim, "/bitcoin/blocks", limit=3).json()["data"][0]  # the cache was not damaged
    sim.add_fault(FaultRule("wrong_type", endpoint="blocks"))
    rows = get(sim, "/bitcoin/blocks", limit=3).json()["data"]
    assert rows[0]["id"] == "abc"
    assert isinstance(rows[1]["id"], int)
    sim.add_fault(FaultRule("wrong_type", endpoint="transactions"))
    assert get(sim, "/bitcoin/transactions").json()["data"][0]["fee"] == "not-a-number"
    sim.add_fault(FaultRule("empty_data", endpoint="blocks"))
    assert get(sim, "/bitcoin/blocks").json()["data"] == []
    sim.add_fault(FaultRule("missing_field", endpoint="addresses"))
    data = get(sim, "/bitcoin/dashboards/addresses/" + ",".join(GOOD)).json()["data"]["addresses"]
    assert "balance" not in data[GOOD[0]]
    assert "balance" in data[GOOD[1]]


def test_data_faults_on_coingecko(sim: Simulator) -> None:
    now = time.time()
    sim.add_fault(FaultRule("missing_field", endpoint="market_chart_range"))
    prices = cg_range(sim, "bitcoin", now - 5 * DAY, now).json()["prices"]
    assert len(prices[0]) == 1
    assert len(prices[1]) == 2
    sim.add_fault(FaultRule("wrong_type", endpoint="market_chart_range"))
    assert cg_range(sim, "bitcoin", now - 5 * DAY, now).json()["prices"][0][1] == "n/a"
    sim.add_fault(FaultRule("empty_data", endpoint="market_chart_range"))
    assert cg_range(sim, "bitcoin", now - 5 * DAY, now).json() == {
        "prices": [],
        "market_caps": [],
        "total_volumes": [],
    }
    sim.add_fault(FaultRule("missing_field", endpoint="history"))
    body = get(sim, "/api/v3/coins/bitcoin/history", date="01-01-2020").json()
    assert "usd" not in body["market_data"]["current_price"]


def test_fault_counters_times_after_and_chain(sim: Simulator) -> None:
    sim.add_fault(FaultRule("500", endpoint="stats", chain="dash", times=2, after=1))
    codes = [get(sim, "/dash/stats").status_code for _ in range(5)]
    assert codes == [200, 500, 500, 200, 200]
    assert get(sim, "/bitcoin/stats").status_code == 200
    sim.clear_faults()
    sim.add_fault(FaultRule("503", endpoint="blockchair", times=None))
    assert {get(sim, "/litecoin/blocks").status_code for _ in range(4)} == {503}
    assert get(sim, "/api/v3/ping").status_code == 200
    sim.clear_faults()
    sim.add_fault(FaultRule("429", endpoint="any"))
    sim.add_fault(FaultRule("500", endpoint="any"))
    assert [get(sim, "/api/v3/ping").status_code for _ in range(3)] == [429, 500, 200]
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultRule("boom")


# ---------------------------------------------------------------- tips, reorgs, counting, control


def test_reorg_changes_only_the_newest_blocks(sim: Simulator) -> None:
    tip = sim.tip("bitcoin-cash")
    before = get(sim, "/bitcoin-cash/blocks", q=f"id({tip - 9}..)", s="id(asc)").json()["data"]
    tx_before = sim.expected_transactions("bitcoin-cash", tip)
    sim.reorg("bitcoin-cash", 3)
    after = get(sim, "/bitcoin-cash/blocks", q=f"id({tip - 9}..)", s="id(asc)").json()["data"]
    changed = [b["id"] for b, a in zip(before, after, strict=True) if b["hash"] != a["hash"]]
    assert changed == [tip - 2, tip - 1, tip]
    assert before[:7] == after[:7]
    tx_after = sim.expected_transactions("bitcoin-cash", tip)
    assert {t["hash"] for t in tx_before}.isdisjoint(t["hash"] for t in tx_after)
    with make_sim(anchor_time=sim.anchor_time) as twin:
        twin.reorg("bitcoin-cash", 3)
        assert twin.expected_block("bitcoin-cash", tip) == sim.expected_block("bitcoin-cash", tip)


def test_tip_growth_and_advance() -> None:
    with make_sim(tip_growth=True) as sim:
        # T0 is a day before construction; one block per interval has been added since then.
        assert abs((datetime.now(UTC) - sim.anchor_time).total_seconds() - DAY) < 60
        base = sim.tip("bitcoin")
        assert base == 870_000 + DAY // 600
        assert 21_000_000 + DAY // 12 <= sim.tip("ethereum") <= 21_000_000 + DAY // 12 + 5
        sim.advance_tip("bitcoin", 5)
        assert sim.tip("bitcoin") == base + 5
        assert get(sim, "/bitcoin/stats").json()["data"]["best_block_height"] == base + 5
        # Move the simulator's clock 10 minutes on: one bitcoin block, fifty ethereum blocks.
        book = sim._service.book
        frozen = book._clock()
        book._clock = lambda: frozen
        eth = sim.tip("ethereum")
        book._clock = lambda: frozen + 600
        assert sim.tip("bitcoin") == base + 6
        assert sim.tip("ethereum") == eth + 50
    with make_sim(tips={"bitcoin": 1000}) as small:
        assert small.tip("bitcoin") == 1000
        assert small.tip("ethereum") == 21_000_000


def test_tip_growth_follows_a_pinned_anchor() -> None:
    anchor = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    with make_sim(tip_growth=True, anchor_time=anchor) as sim:
        elapsed = (datetime.now(UTC) - anchor).total_seconds()
        assert sim.anchor_time == anchor
        assert sim.tip("bitcoin") == 870_000 + int(elapsed // 600)
        assert sim.block_time("bitcoin", 870_000) == anchor
    with make_sim(tip_growth=True, anchor_time=datetime.now(UTC) + timedelta(hours=1)) as future:
        assert future.tip("bitcoin") == 870_000  # an anchor ahead of now never shrinks the chain


def test_history_anchor_hours() -> None:
    with make_sim(history_anchor_hours=2) as sim:
        assert abs((datetime.now(UTC) - sim.anchor_time).total_seconds() - 2 * 3600) < 60
        assert sim.tip("bitcoin") == 870_000
    with pytest.raises(ValueError, match="history_anchor_hours"):
        SimulatorConfig(history_anchor_hours=-1)


def served_time(row: dict) -> datetime:
    return datetime.strptime(row["time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


@pytest.mark.parametrize("tip_growth", [False, True])
def test_block_times_strictly_increase_around_the_configured_tip(tip_growth: bool) -> None:
    with make_sim(tip_growth=tip_growth) as sim:
        for chain in ("bitcoin", "ethereum", "dogecoin", "litecoin", "bitcoin-cash", "dash"):
            base = SimulatorConfig().tips[chain]
            assert sim.block_time(chain, base) == sim.anchor_time
            rows = get(sim, f"/{chain}/blocks", q=f"id({base - 50}..{base + 49})", s="id(asc)", limit=100)
            rows = rows.json()["data"]
            assert [r["id"] for r in rows] == list(range(base - 50, min(base + 50, sim.tip(chain) + 1)))
            times = [served_time(r) for r in rows]
            assert all(b > a for a, b in zip(times, times[1:], strict=False)), chain
            assert times == [sim.block_time(chain, r["id"]) for r in rows]
            assert rows == [sim.expected_block(chain, r["id"]) for r in rows]


def test_newest_block_is_within_an_interval_of_now_with_tip_growth() -> None:
    intervals = {"bitcoin": 600, "ethereum": 12, "dogecoin": 60, "litecoin": 150, "dash": 150}
    with make_sim(tip_growth=True) as sim:
        for chain, interval in intervals.items():
            for path, params in (("stats", {}), ("blocks", {"limit": 1})):
                before = datetime.now(UTC)
                data = get(sim, f"/{chain}/{path}", **params).json()["data"]
                after = datetime.now(UTC)
                if path == "stats":
                    assert data["best_block_height"] > SimulatorConfig().tips[chain]
                    newest = served_time({"time": data["best_block_time"]})
                else:
                    newest = served_time(data[0])
                # Served times are whole seconds, hence the extra second.
                assert before - timedelta(seconds=interval + 1) < newest < after + timedelta(seconds=interval)
        # Simulated time passes: the newest block stays that fresh.
        book = sim._service.book
        later = time.time() + 3 * DAY + 1234.5
        book._clock = lambda: later
        newest = sim.block_time("bitcoin", sim.tip("bitcoin")).timestamp()
        assert later - 600 < newest < later + 600


def test_advanced_blocks_without_tip_growth_stay_in_the_past(sim: Simulator) -> None:
    tip = sim.tip("bitcoin")
    assert tip == 870_000
    assert datetime.now(UTC) - sim.block_time("bitcoin", tip) > timedelta(hours=23)
    sim.advance_tip("bitcoin", 100)
    rows = get(sim, "/bitcoin/blocks", q=f"id({tip + 1}..)", s="id(asc)", limit=100).json()["data"]
    assert [r["id"] for r in rows] == list(range(tip + 1, tip + 101))
    times = [served_time(r) for r in rows]
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    assert times[-1] < datetime.now(UTC) - timedelta(hours=5)
    txs = get(sim, "/bitcoin/transactions", q=f"block_id({tip + 100})", limit=100).json()["data"]
    assert txs
    assert all(served_time(t) == times[-1] for t in txs)


def test_block_usd_values_use_the_price_of_the_block_date(sim: Simulator) -> None:
    tip = sim.tip("bitcoin")
    days = {}
    for height in range(tip - 200, tip + 1):  # about 33 hours of blocks: at least one midnight
        days.setdefault(sim.block_time("bitcoin", height).date(), height)
    assert len(days) >= 2
    for day, height in days.items():
        block = sim.expected_block("bitcoin", height)
        price = sim.expected_daily_prices("bitcoin", day, day)[0][1]
        assert block["date"] == day.isoformat()
        assert block["generation_usd"] == round(block["generation"] / 100_000_000 * price, 4)
        assert block["reward_usd"] == round(block["reward"] / 100_000_000 * price, 4)


def test_same_anchor_time_and_seed_serve_identical_blocks() -> None:
    anchor = datetime(2025, 3, 1, 12, 30, 15, tzinfo=UTC)
    with make_sim(anchor_time=anchor, seed=7) as first:
        tip = first.tip("bitcoin")
        blocks = get(first, "/bitcoin/blocks", q=f"id({tip - 99}..)", s="id(asc)", limit=100).json()["data"]
        eth_txs = get(first, "/ethereum/transactions", limit=100).json()["data"]
        first.reorg("litecoin", 2)
        ltc = first.expected_block("litecoin", first.tip("litecoin"))
    time.sleep(1.1)  # a second construction time must not matter
    naive = anchor.replace(tzinfo=None)  # taken as UTC
    with make_sim(anchor_time=naive, seed=7) as second:
        assert second.anchor_time == anchor
        assert second.tip("bitcoin") == tip
        assert (
            get(second, "/bitcoin/blocks", q=f"id({tip - 99}..)", s="id(asc)", limit=100).json()["data"]
            == blocks
        )
        assert get(second, "/ethereum/transactions", limit=100).json()["data"] == eth_txs
        second.reorg("litecoin", 2)
        assert second.expected_block("litecoin", second.tip("litecoin")) == ltc
    assert blocks[-1]["time"] == "2025-03-01 12:30:15"
    with make_sim(anchor_time=anchor + timedelta(hours=1), seed=7) as shifted:
        assert shifted.expected_block("bitcoin", tip)["time"] == "2025-03-01 13:30:15"
    offset = datetime(2025, 3, 1, 14, 30, 15, tzinfo=timezone(timedelta(hours=2)))
    assert SimulatorConfig(anchor_time=offset).anchor_time == anchor


def test_command_line_anchor_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.simulator import __main__ as cli

    seen: list[SimulatorConfig] = []
    monkeypatch.setattr(cli, "serve_forever", lambda config, host, port: seen.append(config))
    cli.main(["--port", "0", "--anchor-time", "2025-03-01T12:30:15Z", "--no-tip-growth"])
    cli.main(["--port", "0"])
    assert seen[0].anchor_time == datetime(2025, 3, 1, 12, 30, 15, tzinfo=UTC)
    assert seen[1].anchor_time is None
    with pytest.raises(SystemExit):
        cli.main(["--anchor-time", "yesterday"])


def test_request_counts(sim: Simulator) -> None:
    sim.add_fault(FaultRule("500", endpoint="blocks"))
    get(sim, "/bitcoin/blocks")
    get(sim, "/bitcoin/blocks")
    get(sim, "/ethereum/transactions")
    get(sim, "/api/v3/simple/price", ids="bitcoin", vs_currencies="usd")
    counts = sim.request_counts()
    assert counts["blocks"] == 2
    assert counts["transactions"] == 1
    assert counts["simple_price"] == 1
    assert counts["stats"] == 0
    sim.reset_counts()
    assert set(sim.request_counts().values()) == {0}


def test_control_api(sim: Simulator) -> None:
    control = SimulatorControl(sim.base_url)
    control.add_fault(FaultRule("503", endpoint="stats"))
    control.add_fault({"kind": "500", "endpoint": "history"})
    assert get(sim, "/bitcoin/stats").status_code == 503
    assert control.request_counts()["stats"] == 1  # control calls are not counted
    control.clear_faults()
    assert get(sim, "/api/v3/coins/bitcoin/history", date="01-01-2020").status_code == 200
    tip = control.tip("dash")
    control.advance_tip("dash", 4)
    assert sim.tip("dash") == control.tip("dash") == tip + 4
    old_hash = sim.expected_block("dash", tip + 4)["hash"]
    control.reorg("dash", 1)
    assert sim.expected_block("dash", tip + 4)["hash"] != old_hash
    stats = control.stats()
    assert stats["reorgs"]["dash"] == [[tip + 4, 1]]
    control.reset()
    assert set(control.request_counts().values()) == {0}
    bad = requests.post(sim.base_url + "/_sim/faults", json={"kind": "nope"}, timeout=5)
    assert bad.status_code == 400
    bad = requests.post(sim.base_url + "/_sim/reorg", json={"chain": "x", "depth": 1}, timeout=5)
    assert bad.status_code == 400
