"""Extract: find the batches a run date brings, identify each by its content hash.

A batch is one file (CSV, gzip CSV, Parquet) in the landing folder, laid out as
``<landing>/<source>/<entity>/<YYYY-MM-DD>/<file>``, or one query result of a
SQL source. Structural checks that need no database (header present, expected
columns, decodable header) happen here so a rejection can name the file and
line before anything is copied.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from flows.config import FileSource, Settings, SqlSource
from flows.entities import ATTRIBUTES, ENTITIES, Entity
from flows.mapping_config import EntityMapping

SUFFIXES = (".csv", ".csv.gz", ".parquet")


@dataclass
class Batch:
    """One unit of loading: a file (or query result) of one entity for one extract date."""

    source: str
    entity: str
    extract_date: date
    path: Path
    content_hash: str
    encoding: str = "utf-8"
    delimiter: str = ","
    payload: bytes | None = field(default=None, repr=False)  # SQL sources keep bytes in memory
    mapping: EntityMapping | None = field(default=None, repr=False)  # flows/mapping.py
    # The id a loaded batch was recorded under (replay rebuilds batches from the record,
    # which does not keep the mapping that went into the id).
    recorded_id: str | None = field(default=None, repr=False)
    # Which earlier delivery of the day it replaces: sources.<name>.corrections.
    corrections: str = "same_name"

    @property
    def batch_id(self) -> str:
        if self.recorded_id is not None:
            return self.recorded_id
        # Content plus identity: the same bytes delivered for another entity/date is another batch.
        key = f"{self.source}/{self.entity}/{self.extract_date}/{self.content_hash}"
        if self.mapping is not None:  # read another way, the same bytes are other rows
            key += f"/{self.mapping.fingerprint()}"
        return hashlib.sha256(key.encode()).hexdigest()[:24]

    @property
    def fmt(self) -> str:
        name = self.path.name.lower()
        if name.endswith(".parquet"):
            return "parquet"
        return "csv.gz" if name.endswith(".gz") else "csv"

    def open_binary(self) -> io.BufferedIOBase:
        """The decompressed byte stream of a CSV batch."""
        if self.payload is not None:
            return io.BytesIO(self.payload)
        if self.fmt == "csv.gz":
            return gzip.open(self.path, "rb")  # type: ignore[return-value]
        return open(self.path, "rb")


class StructuralError(Exception):
    """The whole batch is unusable; the message names the file, line and problem."""


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dates_between(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"end date {end} is before start date {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _inside(path: Path, landing: Path) -> bool:
    """The file a path names (links followed) lies under the landing folder."""
    return path.resolve().is_relative_to(landing.resolve())


def _is_day(name: str) -> bool:
    try:
        date.fromisoformat(name)
    except ValueError:
        return False
    return len(name) == 10


def misplaced_input(settings: Settings, days: list[date]) -> list[str]:
    """Warnings for what sits in the landing folder but will never load, and why.

    A misspelt entity folder, a date folder that is not a date, a ``.txt`` file, a
    dangling link or a link out of the landing folder would otherwise be skipped without
    a word. Only names are reported, never content.
    """
    landing = Path(settings.landing)
    out: list[str] = []
    wanted = {d.isoformat() for d in days}
    for name, src in sorted(settings.sources.items()):
        src_dir = landing / name
        if isinstance(src, SqlSource) or not src_dir.is_dir():
            continue
        mine = sorted(e for e, ent in ENTITIES.items() if ent.source == name)
        for ent_dir in sorted(src_dir.iterdir()):
            if ent_dir.name.startswith("."):
                continue
            if not ent_dir.is_dir() or ent_dir.name not in mine:
                near = difflib.get_close_matches(ent_dir.name, mine, n=1)
                hint = f" (did you mean {near[0]}?)" if near else ""
                out.append(f"{ent_dir}: not an entity folder of source {name}{hint}; "
                           f"expected one of {', '.join(mine)}; nothing in it is loaded")
                continue
            for day_dir in sorted(ent_dir.iterdir()):
                if day_dir.name.startswith("."):
                    continue
                if not day_dir.is_dir() or not _is_day(day_dir.name):
                    out.append(f"{day_dir}: not a date folder (YYYY-MM-DD); not loaded")
                    continue
                if day_dir.name not in wanted:
                    continue
                for f in sorted(day_dir.iterdir()):
                    if f.name.startswith("."):
                        continue
                    if f.is_symlink() and not f.exists():
                        out.append(f"{f}: a link to a missing file; not loaded")
                    elif not _inside(f, landing):
                        out.append(f"{f}: links outside the landing folder; not loaded")
                    elif not f.is_file() or not f.name.lower().endswith(SUFFIXES):
                        out.append(f"{f}: not a {', '.join(SUFFIXES)} file; not loaded")
    return out


def find_file_batches(landing: Path, source: str, cfg: FileSource, day: date) -> list[Batch]:
    """Every extract file of ``source`` for ``day``, in a stable order."""
    out: list[Batch] = []
    src_dir = landing / source
    if not src_dir.is_dir():
        return out
    for ent_dir in sorted(p for p in src_dir.iterdir() if p.is_dir()):
        if ent_dir.name not in ENTITIES or ENTITIES[ent_dir.name].source != source:
            continue
        day_dir = ent_dir / day.isoformat()
        if not day_dir.is_dir():
            continue
        for f in sorted(day_dir.iterdir()):
            if not _inside(f, landing):
                continue  # a link out of the landing folder is never read (misplaced_input)
            if f.is_file() and f.name.lower().endswith(SUFFIXES) and not f.name.startswith("."):
                out.append(Batch(source, ent_dir.name, day, f, file_hash(f), cfg.encoding,
                                 cfg.delimiter, mapping=cfg.mapping.get(ent_dir.name),
                                 corrections=cfg.corrections))
    return out


def find_sql_batches(source: str, cfg: SqlSource, day: date, until: datetime | None = None,
                     entities: list[str] | None = None) -> list[Batch]:
    """Run each entity query for the day window and keep the result as CSV bytes.

    The window is bound as parameters, never formatted into the SQL: ``start`` is the day,
    ``end`` the next day, or ``until`` (a moment within the day) for an intra-day read by
    the alerts run. Such a read is the day so far, under the same name as the night's:
    a later read, and the night's whole day, replace it like a re-delivered file
    (flows/corrections.py), and the same rows read again are the same batch.
    """
    import psycopg2

    url = os.environ.get(cfg.url_env)
    if not url:
        from flows.errors import ConfigError

        raise ConfigError(f"source {source!r}: environment variable {cfg.url_env} is not set")
    out: list[Batch] = []
    conn = psycopg2.connect(url, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            for ent_name, query in sorted(cfg.queries.items()):
                if entities is not None and ent_name not in entities:
                    continue
                buf = io.StringIO()
                cur.execute(query, {"start": day, "end": until or day + timedelta(days=1)})
                cols = [d.name for d in cur.description]
                w = csv.writer(buf, lineterminator="\n")
                w.writerow(cols)
                for row in cur:
                    w.writerow(["" if v is None else _csv_value(v) for v in row])
                payload = buf.getvalue().encode("utf-8")
                digest = hashlib.sha256(payload).hexdigest()
                virtual = Path(f"sql://{source}/{ent_name}/{day.isoformat()}")
                out.append(Batch(source, ent_name, day, virtual, digest, payload=payload,
                                 mapping=cfg.mapping.get(ent_name)))
    finally:
        conn.close()
    return out


def _csv_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def find_batches(settings: Settings, days: list[date],
                 entities: list[str] | None = None) -> Iterator[Batch]:
    """All batches for the days, date by date (so a backfill loads in date order)."""
    for day in days:
        for name, src in sorted(settings.sources.items()):
            if isinstance(src, SqlSource):
                found = find_sql_batches(name, src, day)
            else:
                found = find_file_batches(Path(settings.landing), name, src, day)
            for b in found:
                if entities is None or b.entity in entities:
                    yield b


def missing_expected(settings: Settings, days: list[date], batches: list[Batch],
                     entities: list[str] | None = None) -> list[str]:
    """One warning per expected entity (``sources.<name>.entities``) missing on some days.

    A partial delivery is not an error (every entity is optional), but a source that
    promised a daily extract and sent none is worth a line in the summary.
    """
    have = {(b.source, b.entity, b.extract_date) for b in batches}
    out = []
    for name, src in sorted(settings.sources.items()):
        for ent in getattr(src, "entities", []):
            if entities is not None and ent not in entities:
                continue
            absent = [d for d in days if (name, ent, d) not in have]
            if absent:
                out.append(f"{name}/{ent}: no extract on {len(absent)} of {len(days)} day(s) "
                           f"(first {absent[0]}); expected daily by cxloop.yml "
                           f"sources.{name}.entities")
    return out


def read_header(batch: Batch) -> list[str]:
    """The column names of a batch, or a StructuralError naming file and problem."""
    if batch.fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(batch.path).names)
        except Exception as e:
            raise StructuralError(f"{batch.path}: not a readable Parquet file: {e}") from None
    try:
        with batch.open_binary() as fb:
            first = fb.readline()
    except (OSError, EOFError) as e:
        raise StructuralError(f"{batch.path}: cannot read: {e}") from None
    if not first.strip():
        raise StructuralError(f"{batch.path}: line 1: empty file, expected a header row")
    try:
        text = first.decode(batch.encoding)
    except UnicodeDecodeError as e:
        raise StructuralError(
            f"{batch.path}: line 1: bytes not valid {batch.encoding} at offset {e.start}; "
            "set the source's encoding in cxloop.yml (e.g. gb18030)"
        ) from None
    return next(csv.reader([text.lstrip("\ufeff")], delimiter=batch.delimiter))


def check_columns(batch: Batch, header: list[str], entity: Entity) -> None:
    """Missing, renamed or repeated columns reject the whole batch.

    Columns the contract does not name are no problem: they are kept per row in
    ``attributes`` (flows/mapping.py). A file may bring ``attributes`` itself. Optional
    contract columns may be left out: COPY names the header's columns, so the ones
    absent load as null.
    """
    expected = entity.column_names
    missing = [c for c in expected if c not in header and c not in entity.optional_columns]
    extra = [c for c in header if c not in expected and c != ATTRIBUTES.name]
    dupes = sorted({c for c in header if header.count(c) > 1})
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    # An extra column spelt almost like an absent optional one is a typo, not an attribute:
    # kept in ``attributes`` it would leave the real column silently empty.
    absent = [c for c in entity.optional_columns if c not in header]
    for c in extra:
        near = difflib.get_close_matches(c, absent, n=1, cutoff=0.85)
        if near:
            problems.append(f"column {c!r} looks like the optional column {near[0]!r} "
                            "(misspelt?)")
    if dupes:
        problems.append(f"repeated column(s) {', '.join(dupes)}")
    if problems:
        hint = ""
        if missing and extra:
            hint = (f" (renamed? the file has {', '.join(extra)}: map it with "
                    f"sources.{batch.source}.mapping.{entity.name}.rename in cxloop.yml)")
        optional = (f" (optional: {', '.join(entity.optional_columns)})"
                    if entity.optional_columns else "")
        raise StructuralError(f"{batch.path}: line 1: {'; '.join(problems)}{hint}; "
                              f"expected {', '.join(expected)}{optional}")
