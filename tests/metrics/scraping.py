"""Helpers of the metrics tests: scrape a collector (in process or over HTTP) and read the samples back with
prometheus-client's own parser of the text format, and the run log's totals recomputed from its rows."""

from __future__ import annotations

import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.metrics.command import exporter_database
from pipeline.metrics.server import build_registry
from pipeline.models import DataIngestionLog

Labels = frozenset[tuple[str, str]]


@dataclass
class Scrape:
    """One scrape, parsed: family names, and every sample's value by sample name and labels."""

    text: str
    families: dict[str, str] = field(default_factory=dict)  # family name -> type
    samples: dict[str, dict[Labels, float]] = field(default_factory=lambda: defaultdict(dict))

    @classmethod
    def parse(cls, text: str) -> Scrape:
        scrape = cls(text)
        for family in text_string_to_metric_families(text):
            scrape.families[family.name] = family.type
            for sample in family.samples:
                scrape.samples[sample.name][frozenset(sample.labels.items())] = sample.value
        return scrape

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the sample with exactly these labels, None when there is none."""
        return self.samples.get(name, {}).get(frozenset(labels.items()))

    def by(self, name: str, *keys: str) -> dict[tuple[str, ...], float]:
        """Every sample of a name keyed by some of its labels (in order)."""
        return {tuple(dict(labels)[k] for k in keys): v for labels, v in self.samples.get(name, {}).items()}

    @property
    def names(self) -> set[str]:
        """Every sample name present (a counter's family `x` shows as `x_total`)."""
        return {name for name, values in self.samples.items() if values} | set(self.families)


def collect(registry: CollectorRegistry) -> Scrape:
    """Scrape a registry in this process (what its HTTP server would send)."""
    return Scrape.parse(generate_latest(registry).decode())


def scrape_registry(
    db: DatabaseService, settings: Settings | None = None
) -> tuple[CollectorRegistry, Scrape]:
    """A fresh exporter registry over the database of `db`, through the service the command builds (on
    PostgreSQL: autocommit reads), primed as the command primes it, and its first scrape."""
    exporter = exporter_database(settings or db.settings)
    registry, collector = build_registry(exporter, exporter.settings)
    weakref.finalize(registry, exporter.dispose)  # its connections go with the registry
    collector.prime()
    return registry, collect(registry)


def fetch(url: str) -> Scrape:
    """Scrape an exporter over HTTP."""
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return Scrape.parse(response.text)


@dataclass
class Expected:
    """The run log's totals recomputed from every row (the truth the counters must equal)."""

    runs: dict[tuple[str, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    running: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    requests: dict[tuple[str, str, str], float] = field(default_factory=lambda: defaultdict(float))
    retries: dict[tuple[str, str, str], float] = field(default_factory=lambda: defaultdict(float))
    wait: dict[tuple[str, str, str], float] = field(default_factory=lambda: defaultdict(float))
    last_success: dict[tuple[str, str, str], datetime] = field(default_factory=dict)


def expected_runs(db: DatabaseService) -> Expected:
    """Totals per unit and status from every run-log row, read whole and summed here."""
    expected = Expected()
    with db.session() as session:
        rows = session.scalars(select(DataIngestionLog)).all()
    for run in rows:
        unit = (run.source, run.data_type, run.coin or "")
        for status in ("success", "partial", "failed"):  # every unit that ran, each final status
            expected.runs.setdefault((*unit, status), 0)
        if run.status == "running":
            expected.running[unit] += 1
            continue
        expected.runs[(*unit, run.status)] += 1
        expected.requests[unit] += run.requests_made
        expected.retries[unit] += run.retries
        expected.wait[unit] += run.wait_seconds
        if run.status == "success" and run.finished_at is not None:
            best = expected.last_success.get(unit)
            expected.last_success[unit] = max(best, run.finished_at) if best else run.finished_at
    return expected


def assert_runs_match(scrape: Scrape, expected: Expected) -> None:
    """Every run-log family of the scrape equals the totals recomputed from the rows."""
    unit = ("source", "data_type", "coin")
    assert scrape.by("crypto_pipeline_runs_total", *unit, "status") == dict(expected.runs)
    assert scrape.by("crypto_pipeline_runs_running", *unit) == {
        k: v for k, v in expected.running.items() if v
    }
    units = {key[:3] for key in expected.runs}
    assert scrape.by("crypto_pipeline_requests_total", *unit) == {u: expected.requests[u] for u in units}
    assert scrape.by("crypto_pipeline_retries_total", *unit) == {u: expected.retries[u] for u in units}
    waits = scrape.by("crypto_pipeline_wait_seconds_total", *unit)
    assert waits.keys() == units
    for key, seconds in waits.items():
        assert abs(seconds - expected.wait[key]) < 1e-6
    last = scrape.by("crypto_pipeline_last_success_timestamp_seconds", *unit)
    assert last == {u: when.timestamp() for u, when in expected.last_success.items()}
