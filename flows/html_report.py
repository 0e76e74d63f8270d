"""The static HTML run report: what happened, and the four pictures a manager looks at.

One self-contained file per run (``<home>/reports/<run_id>/index.html``, plots
embedded as PNG data URIs so it can be mailed or archived), plus
``<home>/reports/latest.html``. Plots: survival curves by segment, the
action-priority quadrant, NPS and benchmark-scaled scores over time, and tasks
by owner and SLA state.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from flows.report import HIGHLIGHTS, RunSummary  # noqa: E402
from flows.warehouse import Warehouse  # noqa: E402

log = logging.getLogger(__name__)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _frame(wh: Warehouse, query: str) -> pd.DataFrame:
    try:
        return wh.read_frame(query)
    except Exception as e:  # a missing mart leaves a gap in the report, not a failed run
        log.warning("report query failed: %s", e)
        return pd.DataFrame()


def plot_survival(wh: Warehouse) -> str | None:
    """Kaplan–Meier curves of tenure by segment: the churn stage's own (lifelines, with
    delayed entry, marts.churn_km_curves), so the report shows one curve per grouping."""
    f = _frame(wh, "select group_value, timeline_days, survival from marts.churn_km_curves "
                   "where group_type = 'segment' order by group_value, timeline_days")
    if f.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for seg, g in f.groupby("group_value", sort=True):
        ax.step(g["timeline_days"], g["survival"], where="post", label=str(seg))
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_xlabel("tenure (days)")
    ax.set_ylabel("share still a customer")
    ax.set_title("Survival by segment (Kaplan–Meier, delayed entry)")
    return _png(fig)


def plot_quadrant(wh: Warehouse) -> str | None:
    q = _frame(wh, "select touchpoint_code, quadrant, importance, performance, importance_cut, "
                   "rating_cut from marts.mart_priority_quadrant where is_headline")
    if q.empty:
        return None
    colours = {"fix_first": "#c0392b", "keep_up": "#27ae60", "low_priority": "#7f8c8d",
               "possible_overkill": "#2980b9", "negative_effect": "#8e44ad"}
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for _, r in q.iterrows():
        ax.scatter(r["performance"], r["importance"], color=colours.get(r["quadrant"], "k"), s=60)
        ax.annotate(r["touchpoint_code"], (r["performance"], r["importance"]), fontsize=8,
                    xytext=(4, 3), textcoords="offset points")
    ax.axvline(q["rating_cut"].iloc[0], color="grey", lw=0.8, ls="--")
    ax.axhline(q["importance_cut"].iloc[0], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("performance (mean rating)")
    ax.set_ylabel("importance (relative weight)")
    ax.set_title("Action-priority quadrant: top left = fix first")
    return _png(fig)


def plot_trends(wh: Warehouse) -> str | None:
    nps = _frame(wh, "select month_start, sum(nps_promoters - nps_detractors)::float8 * 100 "
                     "/ nullif(sum(nps_n), 0) as nps from marts.mart_satisfaction_trend "
                     "group by 1 order by 1")
    scaled = _frame(wh, "select period_start, touchpoint_code, csat_score "
                        "from marts.mart_touchpoint_scorecard where segment = 'all' "
                        "and period_type = 'month' order by 1")
    if nps.empty and scaled.empty:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    if not nps.empty:
        a1.plot(pd.to_datetime(nps["month_start"]), nps["nps"].astype(float), marker="o")
        a1.set_title("NPS by month")
        a1.set_ylabel("NPS (−100..100)")
        a1.tick_params(axis="x", rotation=45)
    if not scaled.empty:
        for tp, g in scaled.groupby("touchpoint_code"):
            a2.plot(pd.to_datetime(g["period_start"]), g["csat_score"].astype(float), marker=".",
                    label=tp)
        a2.axhline(0, color="#c0392b", lw=0.8, ls="--")
        a2.axhline(100, color="#27ae60", lw=0.8, ls="--")
        a2.set_title("CSAT, benchmark-scaled (expectation 0 %, benchmark 100 %)")
        a2.legend(fontsize=7, ncol=2)
        a2.tick_params(axis="x", rotation=45)
    return _png(fig)


def plot_tasks(wh: Warehouse, as_of: str) -> str | None:
    t = _frame(wh, "select owner_team, case when status = 'suppressed' then 'suppressed' "
                   "when status not in ('open', 'in_progress') then 'closed' "
                   f"when due_at < timestamptz '{as_of}' then 'overdue' else 'within SLA' end "
                   "as sla_state, count(*) as n from ops.improvement_tasks group by 1, 2")
    if t.empty:
        return None
    pivot = t.pivot_table(index="owner_team", columns="sla_state", values="n", fill_value=0)
    fig, ax = plt.subplots(figsize=(7, 4))
    pivot.plot.barh(stacked=True, ax=ax)
    ax.set_xlabel("tasks")
    ax.set_title("Improvement tasks by owner and SLA state")
    return _png(fig)


# Marks the body with how many plots decoded, so a headless browser can verify the
# report really renders (tests/test_e2e.py reads it with chromium --dump-dom).
_SELF_CHECK = (
    "<script>window.addEventListener('load',()=>{document.body.dataset.plotsRendered="
    "[...document.querySelectorAll('img.plot')].filter(i=>i.complete&&i.naturalWidth>0)"
    ".length;});</script>"
)


def _table(rows: list[tuple], headers: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>"
                                    for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(wh: Warehouse, s: RunSummary, highlights: dict[str, list[tuple]],
                 home: Path) -> Path:
    """Render the run's HTML report; returns its path (and refreshes ``latest.html``)."""
    as_of = f"{s.end_date} 23:59:59+00"
    plots = {
        "survival": ("Survival curves by segment", plot_survival(wh)),
        "quadrant": ("Action-priority quadrant", plot_quadrant(wh)),
        "trends": ("NPS and benchmark-scaled scores over time", plot_trends(wh)),
        "tasks": ("Tasks by owner and SLA state", plot_tasks(wh, as_of)),
    }
    parts = [
        f"<h1>cxloop {html.escape(s.flow)} {s.start_date}"
        + (f" → {s.end_date}" if s.end_date != s.start_date else "") + "</h1>",
        f"<p class='status {html.escape(s.status)}'>Status <b>{html.escape(s.status)}</b> · run "
        f"<code>{html.escape(s.run_id)}</code> · model {html.escape(s.model_version or 'none')}"
        "</p>",
        f"<p>Batches loaded {s.count('loaded')}, skipped {s.count('skipped')}, rejected "
        f"{s.count('rejected')}; rows loaded {s.rows_loaded:,}, quarantined "
        f"{s.rows_quarantined:,}.</p>",
    ]
    if s.rejected:
        parts.append("<ul class='rejections'>" + "".join(
            f"<li>{html.escape(b.error or '')}</li>" for b in s.rejected) + "</ul>")
    for key, (title, png) in plots.items():
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(f"<img id='plot-{key}' class='plot' alt='{html.escape(title)}' "
                     f"src='data:image/png;base64,{png}'>" if png
                     else f"<p id='plot-{key}' class='missing'>no data yet</p>")
    out = Path(home).resolve() / "reports" / s.run_id / "index.html"
    # Kaplan–Meier plots the churn stage drew for this run (by value tier, Apostle group…).
    for km in sorted(out.parent.glob("km_*.png")):
        group = km.stem.removeprefix("km_")
        if group == "segment":  # already shown above, from the same curves
            continue
        parts.append(f"<h2>Survival by {html.escape(group.replace('_', ' '))}</h2>")
        parts.append(f"<img id='plot-km-{html.escape(group)}' class='plot' alt='survival by "
                     f"{html.escape(group)}' src='data:image/png;base64,"
                     f"{base64.b64encode(km.read_bytes()).decode()}'>")
    for key, title, headers in HIGHLIGHTS:
        parts += [f"<h2>{html.escape(title)}</h2>", _table(highlights.get(key, []), headers)]
    parts += [
        "<h2>Stages</h2>",
        _table([(k, v.get("seconds"), v.get("detail", "")) for k, v in s.stages.items()],
               ["stage", "seconds", "detail"]),
    ]
    doc = ("<!doctype html><html><head><meta charset='utf-8'><title>cxloop "
           f"{html.escape(s.run_id)}</title><style>body{{font-family:sans-serif;max-width:1100px;"
           "margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;"
           "padding:3px 8px}}img.plot{{max-width:100%}}.failed{{color:#c0392b}}</style></head>"
           "<body>" + "\n".join(parts) + _SELF_CHECK + "</body></html>\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc, encoding="utf-8")
    shutil.copyfile(out, out.parent.parent / "latest.html")
    return out
