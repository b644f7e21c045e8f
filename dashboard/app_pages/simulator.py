"""Simulator: make the local API simulator misbehave and watch what the pipeline makes of it.

Only with simulated data (SIMULATED_DATA; `up --demo` sets it): the router lists the page then and only
then. It talks to the simulator's control API at BLOCKCHAIR_BASE_URL (the demo points both sources at the
simulator) through `data`, whose writes refuse when the dashboard is read-only.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import components as ui
from dashboard import data, gate

NOTICE = "simulator_notice"
TIMES = {"once": "Once", "n": "N times", "until_cleared": "Until cleared"}
ANY_CHAIN = ""
COMMAND = "crypto-pipeline simulate fault"


def fault_command(kind: str, endpoint: str, chain: str | None, times: int | None) -> str:
    """The command line that arms the same fault (`crypto-pipeline simulate fault add`)."""
    parts = [f"{COMMAND} add --endpoint {endpoint} --kind {kind}"]
    if chain:
        parts.append(f"--chain {chain}")
    if times is None:
        parts.append("--until-cleared")
    elif times != 1:
        parts.append(f"--times {times}")
    return " ".join(parts)


def faults_frame(faults: list[dict[str, Any]]) -> pd.DataFrame:
    """The armed rules that still have something to do (a rule whose `times` are used up is spent)."""
    rows = []
    for rule in faults:
        times, fired = rule.get("times"), int(rule.get("fired") or 0)
        if times is not None and fired >= times:
            continue
        rows.append(
            {
                "kind": str(rule.get("kind")),
                "endpoint": str(rule.get("endpoint")),
                "chain": str(rule.get("chain") or "any"),
                "times": "until cleared" if times is None else f"{times:,}",
                "left": "until cleared" if times is None else f"{times - fired:,}",
                "fired": fired,
                "requests seen": int(rule.get("seen") or 0),
            }
        )
    columns = ["kind", "endpoint", "chain", "times", "left", "fired", "requests seen"]
    return pd.DataFrame(rows, columns=columns)


def chain_options(stats: dict[str, Any]) -> list[str]:
    """What a fault can be narrowed to: the simulator's chains and the coins' CoinGecko ids."""
    names = set(stats.get("tips") or {})
    for coin in data.coins():
        names |= {n for n in (coin.blockchair_chain, coin.coingecko_id) if n}
    return [ANY_CHAIN, *sorted(names)]


def render_add(stats: dict[str, Any]) -> None:
    """Kind, endpoint, chain and how often, the matching command, and the button that arms it."""
    ui.section("Inject a fault", ":material/bolt:", "The next matching requests of the pipeline get it.")
    kind_col, endpoint_col, chain_col, times_col, n_col = st.columns(
        [2, 2, 2, 3, 1], vertical_alignment="bottom"
    )
    kind = kind_col.selectbox(
        "Kind", data.FAULT_KIND_CHOICES, index=data.FAULT_KIND_CHOICES.index("503"), key="sim_kind"
    )
    endpoint = endpoint_col.selectbox(
        "Endpoint",
        data.FAULT_ENDPOINT_CHOICES,
        index=data.FAULT_ENDPOINT_CHOICES.index("blocks"),
        key="sim_endpoint",
    )
    chain = chain_col.selectbox(
        "Chain or coin", chain_options(stats), key="sim_chain", format_func=lambda c: c or "any"
    )
    how = times_col.segmented_control(
        "Times", list(TIMES), key="sim_times", default="once", required=True, format_func=TIMES.__getitem__
    )
    count = n_col.number_input("N", min_value=1, max_value=10_000, value=3, key="sim_n", disabled=how != "n")
    times = None if how == "until_cleared" else int(count) if how == "n" else 1
    command = fault_command(str(kind), str(endpoint), chain or None, times)
    st.code(command, language=None)
    what = ui.literal(f"{kind} on {endpoint}" + (f" ({chain})" if chain else ""))
    if st.button(f"Add fault: {what}", key="sim_add", icon=":material/add_circle:", type="primary"):
        try:
            data.add_simulator_fault(str(kind), endpoint=str(endpoint), chain=chain or None, times=times)
        except (OSError, ValueError, PermissionError) as exc:
            st.error(f"The fault was not added: {ui.literal(data.redact(str(exc)))}", icon=":material/error:")
            return
        st.session_state[NOTICE] = f"Fault added: {what}. Same as: {ui.literal(command)}"
        st.rerun()


def render_faults(stats: dict[str, Any], *, writes: bool) -> None:
    """The rules still armed, and the button that clears them all."""
    active = faults_frame(stats.get("faults") or [])
    ui.section(
        f"Active faults ({len(active)})",
        ":material/report:",
        f"Rules with requests still to fail, in the order they match. Same as `{COMMAND} list`.",
    )
    if active.empty:
        st.caption("No fault armed: the simulator answers every request normally.")
    else:
        st.dataframe(active, hide_index=True, height=ui.table_height(len(active)))
    armed = bool(stats.get("faults"))
    if writes and armed and st.button("Clear all faults", key="sim_clear", icon=":material/delete_sweep:"):
        try:
            data.clear_simulator_faults()
        except (OSError, PermissionError) as exc:
            st.error(
                f"The faults were not cleared: {ui.literal(data.redact(str(exc)))}",
                icon=":material/error:",
            )
            return
        st.session_state[NOTICE] = f"Every fault cleared. Same as `{COMMAND} clear`."
        st.rerun()


def render_requests(stats: dict[str, Any]) -> None:
    """Requests the simulator served per endpoint (faulted ones included), and the tips of the chains the
    pipeline ingests."""
    ui.section("Requests served", ":material/swap_vert:", "Per endpoint, faulted requests included.")
    counts = stats.get("requests") or {}
    total = sum(int(v) for v in counts.values())
    cols = st.columns(4)
    cols[0].metric("Requests", f"{total:,}", border=True)
    ingested = {c.blockchair_chain for c in data.coins() if c.blockchair_chain}
    tips = {chain: tip for chain, tip in (stats.get("tips") or {}).items() if chain in ingested}
    for col, (chain, tip) in zip(cols[1:], sorted(tips.items()), strict=False):
        col.metric(f"{ui.literal(chain)} tip", f"{int(tip):,}", border=True)
    frame = pd.DataFrame(sorted(counts.items()), columns=["endpoint", "requests"])
    st.dataframe(
        frame, hide_index=True, height=ui.table_height(len(frame), most=420),
        column_config={"requests": ui.count_column("requests")},
    )  # fmt: skip


ui.page_header(
    "Simulator",
    ":material/science:",
    "Make the simulated sources misbehave, then watch the runs, incidents and coverage react.",
)
settings = data.settings()
if not settings.SIMULATED_DATA:  # not listed then; an old bookmark still lands here
    st.info(
        "The simulator panel is only for simulated data (SIMULATED_DATA=true).", icon=":material/science:"
    )
    st.stop()
access = gate.current(settings)
try:
    simulator_stats = data.simulator_stats()
except (OSError, ValueError) as exc:
    st.error(
        "**The simulator does not answer** at the Blockchair base URL "
        f"({ui.literal(data.redact(settings.BLOCKCHAIR_BASE_URL))}): {ui.literal(data.redact(str(exc)))}. "
        "Start it with `crypto-pipeline simulate`, or run the demo with `crypto-pipeline up --demo`.",
        icon=":material/cloud_off:",
    )
    st.stop()
if notice := st.session_state.pop(NOTICE, None):
    st.success(notice, icon=":material/check_circle:")
faults = access.allows("simulator_fault")
if faults:
    render_add(simulator_stats)
else:
    off = access.refusal("simulator_fault", "simulator faults", off="faults cannot be added or cleared",
                         name=ui.literal)  # fmt: skip
    st.caption(f":material/lock: {off}")
render_faults(simulator_stats, writes=faults)
render_requests(simulator_stats)
