"""Tests of the demo data generator (flows/demo/).

The generator is the yardstick for the rest of cxloop, so these tests check that it keeps
its promises: deterministic bytes, the extract contract, clean data when asked for clean
data, exactly the faults the manifest lists, and the planted structure (hazard model,
touchpoint importances) being recoverable by an honest analysis.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.config import Domain
from flows.demo import BETAS, FILE_FAULT_KINDS, ROW_FAULT_KINDS, generate, load_catalogue
from flows.entities import ENTITIES, SURVEY_TYPES

# The demo writes the default domain of cxloop.yml: what a default run accepts.
DOMAIN = Domain()
CHANNELS = tuple(DOMAIN.categories["interactions.channel"])
SCORE_RANGES: dict[str, dict[str, tuple]] = {}
for _key, _bounds in DOMAIN.scales.items():
    SCORE_RANGES.setdefault(_key.split(".")[0], {})[_key.split(".")[1]] = _bounds

START = date(2026, 7, 1)
CAT = load_catalogue()
TOUCHPOINTS = set(CAT.codes)
ITEM_OF = dict(zip(CAT.codes, CAT.items, strict=True))
EMAIL = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$")
CODES: dict[str, tuple[str, ...]] = {
    "region": tuple(DOMAIN.categories["customers.region"]),
    "segment": tuple(DOMAIN.categories["customers.segment"]),
    "plan": tuple(DOMAIN.categories["customers.plan"]),
    "acquisition_channel": tuple(DOMAIN.categories["customers.acquisition_channel"]),
    "channel": CHANNELS,
    "survey_type": SURVEY_TYPES,
    "status": tuple(DOMAIN.categories["subscriptions.status"]),
    "comment_language": tuple(DOMAIN.categories["responses.comment_language"]),
    "dimension": tuple(DOMAIN.experience_dimensions),
    "item_code": tuple(CAT.items),
    "cancel_reason": ("price", "competitor", "service", "billing", "moved", "other"),
}


# --------------------------------------------------------------------------------------
# A small independent validator: what a loader would flag, row by row
# --------------------------------------------------------------------------------------
def _parses(pg_type: str, v: str) -> bool:
    try:
        if pg_type == "integer":
            return re.fullmatch(r"-?\d+", v) is not None
        if pg_type.startswith("numeric"):
            return re.fullmatch(r"-?\d+\.\d{2}", v) is not None
        if pg_type == "boolean":
            return v in ("true", "false")
        if pg_type == "date":
            return re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) is not None and bool(
                date.fromisoformat(v))
        if pg_type == "timestamptz":
            return re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", v) is not None and bool(
                datetime.strptime(v, "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return False
    return True


def _when(v: str) -> datetime:
    return datetime.strptime(v, "%Y-%m-%d %H:%M:%S") if len(v) > 10 else datetime.fromisoformat(v)


def row_problems(entity: str, header: list[str], rows: list[list[str]],
                 extract: date) -> dict[int, set[str]]:
    """1-based data row -> kinds of problems found (same vocabulary as the manifest)."""
    ent = ENTITIES[entity]
    assert header == ent.column_names
    ranges = SCORE_RANGES.get(entity, {})
    end = datetime.combine(extract + timedelta(days=1), datetime.min.time())
    seen: set[tuple[str, ...]] = set()
    out: dict[int, set[str]] = {}
    for n, row in enumerate(rows, start=1):
        bad: set[str] = set()
        assert len(row) == len(header), (entity, n, row)
        rec = dict(zip(header, row, strict=True))
        for c in ent.columns:
            v = rec[c.name]
            if v == "":
                if c.required:
                    bad.add("null_key" if c.name in ent.key else "null_required")
                continue
            if not _parses(c.pg_type, v):
                bad.add("bad_type")
                continue
            if c.name in ranges:
                lo, hi = ranges[c.name]
                if not lo <= int(v) <= hi:
                    bad.add("out_of_range")
            if c.name == "touchpoint_code" and v not in TOUCHPOINTS:
                bad.add("unknown_touchpoint")
            if c.name in ("channel", "acquisition_channel") and v not in CHANNELS:
                bad.add("unknown_channel")
            if c.name == "email" and not EMAIL.match(v):
                bad.add("malformed_email")
            if c.name in CODES and c.name not in ("channel", "acquisition_channel") and (
                v not in CODES[c.name]
            ):
                bad.add("unknown_code")
        et = ent.event_time
        if et and rec[et] and _parses(ent.column(et).pg_type, rec[et]) and _when(rec[et]) >= end:
            bad.add("impossible_date")
        if entity == "responses" and all(
            rec[c] and _parses("timestamptz", rec[c]) for c in ("invited_at", "responded_at")
        ) and _when(rec["responded_at"]) < _when(rec["invited_at"]):
            bad.add("impossible_date")
        if entity == "item_ratings" and rec["touchpoint_code"] in ITEM_OF and rec["item_code"] and (
            ITEM_OF[rec["touchpoint_code"]] != rec["item_code"]
        ):
            bad.add("item_mismatch")
        key = tuple(rec[k] for k in ent.key)
        if all(key):
            if key in seen:
                bad.add("duplicate_id")
            seen.add(key)
        if bad:
            out[n] = bad
    return out


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def extract_files(out: Path) -> list[tuple[str, date, Path]]:
    files = []
    for name, ent in ENTITIES.items():
        for day_dir in sorted((out / ent.source / name).iterdir()):
            for f in day_dir.iterdir():
                files.append((name, date.fromisoformat(day_dir.name), f))
    return files


def hashes(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------
# Fixtures: each scale generated once per module
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small")
    generate(out, customers=1500, days=45, start=START, seed=3)
    return out


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faulty")
    generate(out, customers=1500, days=45, start=START, seed=5, faults=0.03)
    return out


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("large")
    generate(out, customers=20000, days=200, start=START, seed=11)
    return out


# --------------------------------------------------------------------------------------
# Determinism and layout
# --------------------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    kw = dict(customers=300, days=12, start=START, faults=0.05)
    a = hashes((generate(tmp_path / "a", seed=1, **kw)).out)
    b = hashes((generate(tmp_path / "b", seed=1, **kw)).out)
    c = hashes((generate(tmp_path / "c", seed=2, **kw)).out)
    assert a == b
    assert set(a) - {k for k in a if k.startswith("_faults")} <= set(c)
    changed = [k for k in a if k in c and a[k] != c[k]]
    assert len(changed) > len(a) // 2


def test_parquet_format_same_columns(tmp_path: Path) -> None:
    s = generate(tmp_path, customers=200, days=3, start=START, seed=1, fmt="parquet")
    assert all(f.endswith(".parquet") for f in s.files)
    for f in s.files:
        ent = Path(f).parts[1]
        df = pd.read_parquet(tmp_path / f)
        assert list(df.columns) == ENTITIES[ent].column_names
    out = tmp_path / "faulty"
    s = generate(out, customers=300, days=8, start=START, seed=1, fmt="parquet", faults=0.05)
    man = pd.read_csv(out / "_faults" / "manifest.csv", dtype=str, keep_default_na=False)
    kinds = dict(zip(man.file[man.row == ""], man.kind[man.row == ""], strict=True))
    # no text encoding inside Parquet: the other three file faults are placed
    assert set(kinds.values()) == {"truncated", "missing_column", "renamed_column"}
    for f, kind in kinds.items():
        if kind == "truncated":
            with pytest.raises(Exception):  # noqa: B017 - any reader error will do
                pd.read_parquet(out / f)
        else:
            assert list(pd.read_parquet(out / f).columns) != ENTITIES[Path(f).parts[1]].column_names


def test_layout_every_day_every_entity_header(small: Path) -> None:
    for name, ent in ENTITIES.items():
        days = sorted(p.name for p in (small / ent.source / name).iterdir())
        assert days == [(START + timedelta(days=i)).isoformat() for i in range(45)]
        for d in days:
            f = small / ent.source / name / d / f"{name}_{d.replace('-', '')}.csv"
            assert f.is_file()
            header, _ = read_csv(f)
            assert header == ent.column_names


def test_day_one_is_the_full_base(small: Path) -> None:
    truth = pd.read_parquet(small / "_truth" / "customers.parquet")
    base = set(truth.loc[truth.in_base_at_start, "customer_id"])
    _, rows = read_csv(small / "crm/customers/2026-07-01/customers_20260701.csv")
    assert base <= {r[0] for r in rows}
    _, subs = read_csv(small / "crm/subscriptions/2026-07-01/subscriptions_20260701.csv")
    assert len(base & {r[1] for r in subs}) == len(base)
    _, later = read_csv(small / "crm/customers/2026-07-20/customers_20260720.csv")
    assert 0 < len(later) < len(base) / 10  # later days carry only new or changed rows


# --------------------------------------------------------------------------------------
# Clean data when faults=0
# --------------------------------------------------------------------------------------
def test_clean_run_has_no_problems(small: Path) -> None:
    problems = {}
    for name, day, f in extract_files(small):
        header, rows = read_csv(f)
        p = row_problems(name, header, rows, day)
        if p:
            problems[f.name] = p
    assert not problems
    assert not (small / "_faults").exists()


def test_clean_run_cross_entity_consistency(small: Path) -> None:
    def load(name: str) -> pd.DataFrame:
        parts = [pd.read_csv(f, dtype=str, keep_default_na=False)
                 for n, _, f in extract_files(small) if n == name]
        return pd.concat(parts, ignore_index=True)

    inv = load("invitations").drop_duplicates("invitation_id").set_index("invitation_id")
    resp = load("responses").drop_duplicates("response_id")
    known = resp[resp.invitation_id.isin(inv.index)]
    assert len(known) == len(resp)  # every answer's invitation was exported
    assert (known.invited_at.values == inv.loc[known.invitation_id, "sent_at"].values).all()
    lag = pd.to_datetime(known.responded_at) - pd.to_datetime(known.invited_at)
    assert lag.min() >= pd.Timedelta(0) and lag.max() <= pd.Timedelta(days=5)
    rate = resp.response_id.nunique() / len(inv)
    assert 0.25 < rate < 0.45
    it = load("interactions").drop_duplicates("interaction_id")
    fcr, res = it.first_contact_resolution == "true", it.resolved == "true"
    assert not (fcr & ~res).any()  # FCR implies resolved
    for tp, ch in (("store_visit", {"store"}), ("installation", {"field"}),
                   ("support_call", {"phone"})):
        assert set(it.loc[it.touchpoint_code == tp, "channel"]) == ch
    comments = resp.comment[resp.comment != ""]
    assert 0.2 < len(comments) / len(resp) < 0.45
    assert {"en", "zh"} == set(resp.comment_language[resp.comment != ""])


def test_warts_late_and_reexported_rows(small: Path) -> None:
    late = again = 0
    seen: set[str] = set()
    for name, day, f in sorted(extract_files(small), key=lambda t: t[1]):
        if name != "interactions":
            continue
        _, rows = read_csv(f)
        for r in rows:
            if date.fromisoformat(r[4][:10]) < day:
                late += 1
            if r[0] in seen:
                again += 1
            seen.add(r[0])
    assert late > 0 and again > 0
    assert again < 0.03 * len(seen)


# --------------------------------------------------------------------------------------
# Faults: exactly what the manifest says
# --------------------------------------------------------------------------------------
def test_faults_match_manifest(faulty: Path) -> None:
    man = pd.read_csv(faulty / "_faults" / "manifest.csv", dtype=str, keep_default_na=False)
    js = json.loads((faulty / "_faults" / "manifest.json").read_text(encoding="utf-8"))
    assert len(js["faults"]) == len(man)
    assert set(man.columns) >= {"file", "row", "entity", "column", "kind"}
    assert set(man.kind) == set(ROW_FAULT_KINDS) | set(FILE_FAULT_KINDS)
    file_faults = man[man.row == ""]
    assert set(file_faults.kind) == set(FILE_FAULT_KINDS)
    row_faults = man[man.row != ""]
    faulted_files = set(file_faults.file)
    assert not faulted_files & set(row_faults.file)

    for _, m in file_faults.iterrows():
        path = faulty / m.file
        data = path.read_bytes()
        ent = ENTITIES[m.entity]
        if m.kind == "wrong_encoding":
            with pytest.raises(UnicodeDecodeError):
                data.decode("utf-8")
            assert re.search(r"[\u4e00-\u9fff]", data.decode("gb18030"))
            continue
        text = data.decode("utf-8")
        header = next(csv.reader([text.split("\n", 1)[0]]))
        if m.kind == "truncated":
            assert not text.endswith("\n") and text.count("\n") >= 1
            assert header == ent.column_names
        elif m.kind == "missing_column":
            assert m.column not in header
            assert header == [c for c in ent.column_names if c != m.column]
        elif m.kind == "renamed_column":
            assert m.column not in header and len(header) == len(ent.column_names)
            assert header != ent.column_names

    expected: dict[str, dict[int, str]] = {}
    for _, m in row_faults.iterrows():
        expected.setdefault(m.file, {})[int(m.row)] = m.kind
    n_rows = 0
    for name, day, f in extract_files(faulty):
        rel = f.relative_to(faulty).as_posix()
        if rel in faulted_files:
            continue
        header, rows = read_csv(f)
        n_rows += len(rows)
        found = row_problems(name, header, rows, day)
        want = expected.get(rel, {})
        assert set(found) == set(want), (rel, found, want)
        for r, kind in want.items():
            assert kind in found[r], (rel, r, kind, found[r])
    assert 0.015 < len(row_faults) / n_rows < 0.05


# --------------------------------------------------------------------------------------
# Planted structure is recoverable
# --------------------------------------------------------------------------------------
def test_cox_recovers_betas(large: Path) -> None:
    from lifelines import CoxPHFitter

    truth = json.loads((large / "_truth" / "truth.json").read_text(encoding="utf-8"))
    assert truth["hazard_model"]["betas"] == BETAS
    assert 0.25 <= truth["hazard_model"]["expected_base_churn_within_1y"] <= 0.35
    df = pd.read_parquet(large / "_truth" / "customers.parquet")
    cols = list(BETAS) + ["duration_days", "event", "entry_days"]
    cph = CoxPHFitter().fit(df[cols], "duration_days", "event", entry_col="entry_days")
    s = cph.summary
    for k, beta in BETAS.items():
        assert s.loc[k, "coef lower 95%"] <= beta <= s.loc[k, "coef upper 95%"], (k, s.loc[k])


def test_churn_is_visible_in_extracts(large: Path) -> None:
    truth = pd.read_parquet(large / "_truth" / "customers.parquet")
    subs = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False)
                      for f in (large / "crm" / "subscriptions").rglob("*.csv")])
    cancelled = subs[subs.status == "cancelled"]
    churned = truth[truth.event == 1]
    assert set(cancelled.customer_id) == set(churned.customer_id)
    merc = set(truth.customer_id[truth.price_sensitive == 1])
    reasons = cancelled.assign(m=cancelled.customer_id.isin(merc)).groupby("m").cancel_reason
    share = reasons.apply(lambda r: r.isin(["price", "competitor"]).mean())
    assert share[True] > 0.8 > share[False]


def _relationship_items(out: Path) -> pd.DataFrame:
    resp = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False)
                      for f in (out / "survey" / "responses").rglob("*.csv")])
    resp = resp[resp.survey_type == "relationship"].drop_duplicates("response_id")
    items = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False)
                       for f in (out / "survey" / "item_ratings").rglob("*.csv")])
    wide = items.assign(rating=items.rating.astype(int)).pivot_table(
        index="response_id", columns="touchpoint_code", values="rating")
    wide = wide.join(resp.set_index("response_id")[["overall_satisfaction"]], how="inner")
    return wide.astype(float)


def test_planted_quadrants(large: Path) -> None:
    wide = _relationship_items(large)
    y = wide.pop("overall_satisfaction")
    means = wide.mean()
    assert means.idxmin() == "billing"
    assert means.idxmax() == "store_visit"
    # importance by correlation (per item, where rated) ...
    corr = {c: np.corrcoef(wide[c][wide[c].notna()], y[wide[c].notna()])[0, 1] for c in wide}
    corr_s = pd.Series(corr)
    assert corr_s.idxmax() == "billing"
    assert corr_s.idxmin() == "store_visit"
    # ... and as a standardised multiple-regression coefficient (missing -> item mean)
    x = wide.fillna(wide.mean())
    z = (x - x.mean()) / x.std()
    coef, *_ = np.linalg.lstsq(np.c_[np.ones(len(z)), z.values], (y - y.mean()) / y.std(),
                               rcond=None)
    std_coef = pd.Series(coef[1:], index=z.columns)
    assert std_coef.idxmax() == "billing"
    assert std_coef["store_visit"] < std_coef.median()


def test_smb_rates_worse_and_mercenaries_are_satisfied(large: Path) -> None:
    truth = pd.read_parquet(large / "_truth" / "customers.parquet").set_index("customer_id")
    items = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False)
                       for f in (large / "survey" / "item_ratings").rglob("*.csv")])
    items["rating"] = items.rating.astype(int)
    items = items.join(truth[["segment", "price_sensitive"]], on="customer_id")
    by_tp = items.pivot_table(index="touchpoint_code", columns="segment", values="rating")
    assert (by_tp["smb"] < by_tp["consumer"]).all()
    merc = items.groupby("price_sensitive").rating.mean()
    assert merc[1] > merc[0]


def test_goes_silent_customers_stop_answering(large: Path) -> None:
    truth = pd.read_parquet(large / "_truth" / "customers.parquet").set_index("customer_id")
    resp = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False)
                      for f in (large / "survey" / "responses").rglob("*.csv")])
    resp = resp.drop_duplicates("response_id").join(
        truth[["goes_silent", "silence_onset_date"]], on="customer_id")
    silent = resp[resp.goes_silent == 1]
    invited = pd.to_datetime(silent.invited_at).dt.date  # onset date = floor(onset time)
    assert len(silent) > 0 and (invited <= silent.silence_onset_date).all()
    inv = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False)
                     for f in (large / "survey" / "invitations").rglob("*.csv")])
    inv = inv.drop_duplicates("invitation_id").join(
        truth[["goes_silent", "silence_onset_date"]], on="customer_id")
    before = inv[(inv.goes_silent == 1)
                 & (pd.to_datetime(inv.sent_at).dt.date < inv.silence_onset_date)]
    rate_before = before.invitation_id.isin(resp.invitation_id).mean()
    overall = inv.invitation_id.isin(resp.invitation_id).mean()
    assert rate_before > 0.7 > 0.45 > overall  # regular responders, then nothing
