"""The Fill gaps flow of the Coverage page: preview the plan, confirm, queue it for the scheduler.

The preview is what `crypto-pipeline fill-gaps --dry-run` prints (slices, requests per source, minutes at
the rate limit, share of the daily request budget). Confirming queues exactly the previewed plan as backfill
requests; a slice that already has an open request is not queued twice, so a second click adds nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from dashboard import components as ui
from dashboard import data

if TYPE_CHECKING:
    from pipeline.services.gapfill import FillPlan

PLAN = "fill_plan"
NOTICE = "fill_notice"
QUEUE_STATES = ("pending", "running", "done", "failed")


def render_fill_gaps(
    *,
    has_gaps: bool,
    read_only: bool,
    alive: bool,
    refusal: str = "Read-only dashboard: filling gaps is disabled (DASHBOARD_READ_ONLY).",
) -> None:
    """The section: queue state, then the Fill gaps button or the preview with its confirmation; when
    `read_only` (this session may not fill gaps), `refusal` says why instead."""
    ui.section(
        "Fill gaps",
        ":material/healing:",
        "Plans the fewest requests that close every gap above and queues them as backfill requests; "
        "the scheduler serves them after its regular jobs, so the latest data keeps priority.",
    )
    if notice := st.session_state.pop(NOTICE, None):
        st.success(notice, icon=":material/check_circle:")
    render_queue()
    if read_only:
        st.caption(f":material/lock: {refusal}")
        return
    plan: FillPlan | None = st.session_state.get(PLAN)
    if plan is None:
        if not has_gaps:
            st.caption("Nothing to fill.")
        elif st.button("Fill gaps…", key="fill_gaps", icon=":material/healing:"):
            with st.spinner("Planning the requests…"):
                st.session_state[PLAN] = data.fill_plan()
            st.rerun()
        return
    render_preview(plan)
    if not alive:
        st.warning(
            "No scheduler is running: queued backfills wait until one starts (`crypto-pipeline run`).",
            icon=":material/power_off:",
        )
    left, right = st.columns(2)
    if plan.slices and left.button(
        f"Confirm: queue {len(plan.slices)} slices ({plan.requests} requests)",
        key="fill_gaps_confirm",
        type="primary",
        icon=":material/playlist_add:",
    ):
        try:
            new, known = data.queue_fill(plan)
        except PermissionError as exc:  # the role changed or the login expired since the page was drawn
            st.error(ui.literal(str(exc)), icon=":material/lock:")
            return
        st.session_state[NOTICE] = _queued_text(new, known)
        del st.session_state[PLAN]
        st.rerun()
    if right.button("Cancel" if plan.slices else "Close", key="fill_gaps_cancel"):
        del st.session_state[PLAN]
        st.rerun()


def render_preview(plan: FillPlan) -> None:
    """The dry-run preview: every slice with its requests, then the cost per source."""
    if not plan.slices:
        st.info("Nothing to fill: every gap has closed since the page was loaded.", icon=":material/done:")
        return
    st.markdown(
        f"**Plan: {plan.requests} requests in {len(plan.slices)} slices** (dry run, nothing queued yet)"
    )
    slices = pd.DataFrame(
        [(s.source, s.data_type, s.subject, s.description, s.requests) for s in plan.slices],
        columns=["source", "data_type", "subject", "slice", "requests"],
    )
    st.dataframe(slices, hide_index=True, key="fill_plan_slices", height=ui.table_height(len(slices)))
    lines = [
        f"- **{ui.literal(source)}**: {n} requests, "
        f"~{plan.minutes_by_source[source]:g} min at the rate limit, "
        f"{plan.daily_share_by_source[source]:.1%} of the daily budget"
        for source, n in plan.requests_by_source.items()
    ]
    st.markdown("\n".join(lines))
    if any(share > 1 for share in plan.daily_share_by_source.values()):
        st.warning(
            "This plan needs more than one day's request budget; the scheduler spreads it over several days.",
            icon=":material/hourglass_top:",
        )


def render_queue() -> None:
    """How many backfill requests wait, run, or have ended."""
    queue = data.backfill_queue()
    if queue:
        parts = [f"{queue.get(s, 0)} {s}" for s in QUEUE_STATES]
        st.caption(":material/queue: Backfill requests: " + " · ".join(parts))


def _queued_text(new: int, known: int) -> str:
    if not new:
        return f"Nothing new queued: all {known} slices already have an open backfill request."
    already = f" ({known} slices were already queued)" if known else ""
    return f"Queued {new} backfill requests{already}. The scheduler serves them after its regular jobs."
