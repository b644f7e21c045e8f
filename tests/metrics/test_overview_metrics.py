"""Every number the Overview page shows equals its metric: the figures of `dashboard/data.py` the page
draws, and the page itself rendered (its metric cards and freshness cards), against one scrape of the
exporter over the same seeded database."""

from __future__ import annotations

import re
from collections import Counter

import pytest
import streamlit.config

from dashboard import data
from pipeline.config import Settings
from pipeline.schemas import WorkerState
from tests.dashboard.helpers import open_page, reset_app_state
from tests.dashboard.seed import populate, seed_incidents
from tests.metrics.scraping import Scrape, scrape_registry
from tests.support.databases import migrated
from tests.support.settings import make_settings

# The label of each metric card of the Overview page -> (sample name, labels) of the metric it equals.
CARDS = {
    "Open incidents": ("sum", "crypto_pipeline_open_incidents", {}),
    "Resolved (24 h)": ("one", "crypto_pipeline_incidents_resolved_last_24h", {}),
    "Failed runs unresolved (24 h)": (
        "one",
        "crypto_pipeline_failed_runs_last_24h",
        {"resolution": "unresolved"},
    ),
    "Failed runs made good (24 h)": (
        "one",
        "crypto_pipeline_failed_runs_last_24h",
        {"resolution": "made_good"},
    ),
    **{
        f"Workers {state.value}": ("one", "crypto_pipeline_workers", {"state": state.value})
        for state in WorkerState
    },
    **{
        status.title(): ("one", "crypto_pipeline_runs_last_24h", {"status": status})
        for status in ("success", "partial", "failed", "running")
    },
}
CARD_VALUE = re.compile(r"^#### :\w+\[(.*)\]$")
CARD_TITLE = re.compile(r"^\*\*(.+)\*\* · (.+)$")


@pytest.fixture
def overview(database_url, monkeypatch):
    """A populated database (runs in every state, a live worker, an open and a resolved incident, stale
    and fresh measures) with the dashboard pointed at it, and one scrape of it."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    db = migrated(make_settings(database_url))
    populate(db)
    seed_incidents(db)
    db.beat("test-host:2:def456", current_job=None)
    db.stop_worker("test-host:2:def456")  # a worker that stopped cleanly
    monkeypatch.setenv("DATABASE_URL", database_url)
    streamlit.config.set_option("server.address", "127.0.0.1")
    reset_app_state()
    _, scrape = scrape_registry(db)
    yield db, scrape
    reset_app_state()
    db.dispose()


def _unescaped(text: str) -> str:
    """Text as the page shows it: the dashboard escapes markdown in stored text (`28\\.6`)."""
    return re.sub(r"\\(.)", r"\1", text)


def _metric(scrape: Scrape, how: str, name: str, labels: dict[str, str]) -> float:
    if how == "sum":
        return sum(scrape.samples[name].values())
    value = scrape.value(name, **labels)
    assert value is not None, (name, labels)
    return value


def test_the_figures_the_overview_reads_equal_their_metrics(overview):
    _, scrape = overview
    assert len(data.incidents(open_only=True)) == sum(
        scrape.samples["crypto_pipeline_open_incidents"].values()
    )
    opened = Counter(i.kind for i in data.incidents(open_only=True))
    for kind, count in scrape.by("crypto_pipeline_open_incidents", "kind").items():
        assert opened[kind[0]] == count
    assert len(data.resolved_incidents(24)) == scrape.value("crypto_pipeline_incidents_resolved_last_24h")
    assert data.failures_by_resolution(24) == {
        key[0]: value
        for key, value in scrape.by("crypto_pipeline_failed_runs_last_24h", "resolution").items()
    }
    assert data.runs_by_status(24) == {
        key[0]: value for key, value in scrape.by("crypto_pipeline_runs_last_24h", "status").items()
    }
    states = Counter(w.state.value for w in data.workers())
    assert {k[0]: v for k, v in scrape.by("crypto_pipeline_workers", "state").items()} == {
        state.value: states[state.value] for state in WorkerState
    }
    assert states == {"up": 1, "stopped": 1}

    freshness = data.freshness()
    assert freshness
    for item in freshness:
        level = scrape.value(
            "crypto_pipeline_freshness_level",
            source=item.source,
            data_type=item.data_type,
            coin=item.coin,
            level=item.level.value,
        )
        assert level == 1, item
        if item.data_type == "blocks":
            assert scrape.value("crypto_pipeline_blocks_behind_tip", coin=item.coin) == item.value
        else:  # the page shows hours to one decimal; the metric is the exact age in seconds
            age = scrape.value("crypto_pipeline_price_age_seconds", coin=item.coin)
            assert age is not None
            assert abs(age / 3600 - item.value) <= 0.05 + 1e-9


@pytest.mark.slow_on_postgresql
def test_every_number_on_the_rendered_overview_equals_its_metric(overview):
    _, scrape = overview
    at = open_page("overview")
    shown = {m.label: m.value for m in at.metric}
    assert set(shown) == set(CARDS), "a number on the Overview without its metric (or the reverse)"
    for label, (how, name, labels) in CARDS.items():
        assert float(str(shown[label]).replace(",", "")) == _metric(scrape, how, name, labels), label

    # Freshness cards: "**coin** · what" then "#### :colour[value unit]".
    texts = [m.value for m in at.markdown]
    cards = []
    for title, value in zip(texts, texts[1:], strict=False):
        if (head := CARD_TITLE.match(title)) and (body := CARD_VALUE.match(value)):
            cards.append(tuple(_unescaped(part) for part in (head.group(1), head.group(2), body.group(1))))
    assert len(cards) == len(data.freshness())
    for coin, what, value in cards:
        name = "blocks_behind_tip" if what == "blocks behind tip" else "price_age_seconds"
        if value == "–":  # nothing stored yet: the page shows a dash, the exporter no sample
            assert scrape.value(f"crypto_pipeline_{name}", coin=coin) is None
            continue
        number, unit = value.split(" ")
        if what == "blocks behind tip":
            assert unit == "blocks"
            assert float(number) == scrape.value("crypto_pipeline_blocks_behind_tip", coin=coin)
        else:
            assert unit == "hours"
            age = scrape.value("crypto_pipeline_price_age_seconds", coin=coin)
            assert abs(float(number) - age / 3600) <= 0.05 + 1e-9, (coin, value, age)
