"""The Simulator page (simulated data only, against a real in-process simulator), the demo's progress on the
Overview, and cleanly stopped workers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pipeline.runtime.launcher import STATE_ENV
from pipeline.simulator import Simulator, SimulatorConfig
from pipeline.simulator.faults import FaultRule
from tests.dashboard.helpers import new_app, open_page, reset_app_state

SIMULATOR_PAGE = "app_pages/simulator.py"


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def unescape(text: str) -> str:
    """Markdown-escaped text (components.literal) as it reads."""
    return text.replace("\\", "")


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(tip_growth=False)) as sim:
        yield sim


def open_simulator(at: AppTest | None = None) -> AppTest:
    at = at or new_app()
    at.run()
    at.switch_page(SIMULATOR_PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# ---------------------------------------------------------------------------------------------- simulator


def test_simulator_panel_adds_and_clears_faults_of_the_running_simulator(
    sqlite_populated, use_database, simulator
):
    db, _ = sqlite_populated
    use_database(db.database_url, SIMULATED_DATA="true", BLOCKCHAIR_BASE_URL=simulator.blockchair_url)
    simulator.add_fault(FaultRule("429", endpoint="history", times=2))
    at = open_simulator()
    active = next(df.value for df in at.dataframe if "kind" in df.value.columns)
    assert active[["kind", "endpoint", "left"]].values.tolist() == [["429", "history", "2"]]
    assert any(m.label == "Requests" for m in at.metric)

    at.selectbox(key="sim_kind").set_value("503")
    at.selectbox(key="sim_endpoint").set_value("blocks")
    at.selectbox(key="sim_chain").set_value("dogecoin")
    at.segmented_control(key="sim_times").set_value("until_cleared").run()
    command = (
        "crypto-pipeline simulate fault add --endpoint blocks --kind 503 --chain dogecoin --until-cleared"
    )
    assert command in [c.value for c in at.code]
    next(b for b in at.button if b.label.startswith("Add fault")).click().run()
    assert not at.exception
    faults = simulator.stats()["faults"]
    assert [(f["kind"], f["endpoint"], f["chain"], f["times"]) for f in faults] == [
        ("429", "history", None, 2),
        ("503", "blocks", "dogecoin", None),
    ]
    assert any("Fault added" in s and command in unescape(s) for s in texts(at, "success"))
    active = next(df.value for df in at.dataframe if "kind" in df.value.columns)
    assert active["left"].tolist() == ["2", "until cleared"]

    at.segmented_control(key="sim_times").set_value("n").run()
    at.number_input(key="sim_n").set_value(5).run()
    assert any(c.value.endswith("--chain dogecoin --times 5") for c in at.code)

    next(b for b in at.button if b.label == "Clear all faults").click().run()
    assert simulator.stats()["faults"] == []
    assert any("Every fault cleared" in s for s in texts(at, "success"))
    assert any("No fault armed" in c for c in texts(at, "caption"))


def test_simulator_page_is_listed_only_for_simulated_data(sqlite_populated, use_database, simulator):
    db, _ = sqlite_populated
    use_database(db.database_url, BLOCKCHAIR_BASE_URL=simulator.blockchair_url)
    at = new_app()
    at.run()
    with pytest.raises(Exception):  # noqa: B017, PT011 - not a page of the app then: AppTest refuses it
        at.switch_page(SIMULATOR_PAGE).run()
    from dashboard import data

    with pytest.raises(PermissionError, match="SIMULATED_DATA"):
        data.simulator_stats()  # nor does `data` talk to a real API's (non-existent) control API
    use_database(db.database_url, SIMULATED_DATA="true", BLOCKCHAIR_BASE_URL=simulator.blockchair_url)
    at = open_simulator()
    assert any("Simulator" in t.value for t in at.title)


def test_read_only_hides_and_refuses_fault_changes(sqlite_populated, use_database, simulator):
    db, _ = sqlite_populated
    use_database(
        db.database_url,
        SIMULATED_DATA="true",
        BLOCKCHAIR_BASE_URL=simulator.blockchair_url,
        DASHBOARD_READ_ONLY="true",
    )
    simulator.add_fault(FaultRule("503", endpoint="blocks", chain="dogecoin", times=None))
    at = open_simulator()
    labels = [b.label for b in at.button]
    assert not [label for label in labels if "fault" in label.lower()], labels
    assert any("faults cannot be added or cleared" in c for c in texts(at, "caption"))
    assert next(df.value for df in at.dataframe if "kind" in df.value.columns)["kind"].tolist() == ["503"]
    from dashboard import data

    with pytest.raises(PermissionError, match="DASHBOARD_READ_ONLY"):
        data.add_simulator_fault("500", endpoint="any", chain=None, times=1)
    with pytest.raises(PermissionError):
        data.clear_simulator_faults()
    assert len(simulator.stats()["faults"]) == 1


def test_a_simulator_that_does_not_answer_is_explained(sqlite_populated, use_database):
    db, _ = sqlite_populated
    with Simulator() as gone:
        url = gone.blockchair_url
    use_database(db.database_url, SIMULATED_DATA="true", BLOCKCHAIR_BASE_URL=url)
    at = open_simulator()
    assert any("The simulator does not answer" in e for e in texts(at, "error"))


# ---------------------------------------------------------------------------------------------- demo


def demo_document(done: int) -> dict:
    from pipeline.runtime.demo import STEPS

    steps = []
    for index, step in enumerate(STEPS, start=1):
        finished = index <= done
        steps.append({
            "index": index, "name": step.name, "offset": step.offset, "look": step.look,
            "due_in": step.offset,
            "done_at": datetime.now(UTC).isoformat() if finished else None, "ok": True if finished else None,
            "outcome": f"did step {index}" if finished else None,
        })  # fmt: skip
    return {"started_at": datetime.now(UTC).isoformat(), "speed": 1.0, "finished": False, "steps": steps}


def test_overview_shows_the_demo_progress_under_the_simulated_notice(
    sqlite_populated, use_database, tmp_path: Path, monkeypatch
):
    db, _ = sqlite_populated
    state = tmp_path / "up" / "state.json"
    state.parent.mkdir()
    state.write_text(json.dumps({"children": {}}))
    (state.parent / "demo.json").write_text(json.dumps(demo_document(done=3)))
    use_database(db.database_url, SIMULATED_DATA="true", **{STATE_ENV: str(state)})
    at = open_page("overview")
    line = "Demo: step 3 of 6 done — malformed record; next: reorganisation at 2:45"
    infos = [unescape(i) for i in texts(at, "info")]
    assert line in infos
    warnings = texts(at, "warning")
    assert warnings[0].startswith("**Simulated data.**")
    expander = next(e for e in at.expander if "Demo steps" in e.label)
    steps = unescape(" ".join(m.value for m in expander.markdown))
    assert "3. malformed record** · done" in steps
    assert "4. reorganisation** · due at 2:45" in steps
    assert "Look at: Ingestion runs: the next bitcoin blocks run names the reorganised heights" in steps
    assert "did step 3" in steps

    (state.parent / "demo.json").unlink()  # not (or no longer) a demo: nothing to say
    reset_app_state()
    assert not any("Demo:" in i for i in texts(open_page("overview"), "info"))


def test_stopped_workers_are_grey_and_not_counted_as_down(sqlite_populated):
    db, _ = sqlite_populated
    now = datetime.now(UTC)
    db.beat("test-host:2:stopped", started_at=now - timedelta(hours=2), current_job=None)
    db.stop_worker("test-host:2:stopped")
    at = open_page("overview")
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Workers up"], metrics["Workers down"], metrics["Workers stopped"]) == ("1", "0", "1")
    table = next(df for df in at.dataframe if "worker" in df.value.columns)
    states = dict(zip(table.value["worker"], table.value["state"], strict=True))
    assert states["test-host:2:stopped"] == ["stopped"]
    column = json.loads(table.proto.columns)["state"]
    options = column["type_config"]["options"]
    stopped = next(o for o in options if o["value"] == "stopped")
    assert stopped["color"] == "#808495"  # grey, like an unknown level; down stays red
    assert next(o for o in options if o["value"] == "down")["color"] == "#ff4b4b"
