"""Seconds per dbt node (model, test, unit test) of one command, from dbt's own log.

dbt writes ``Began running node X`` and ``Finished running node X`` debug lines with the
time of day to ``<home>/dbt/logs/dbt.log``, which it rotates at 10 MB into
``dbt.log.1``, ``dbt.log.2``... Each invocation of a run overwrites
``target/run_results.json``, so the log is where a whole run's per-node times survive.
``LogMark`` notes where the log stood before a command; ``node_seconds`` reads what was
written after it, across rotations. Two threads build side by side, so the node seconds
of a run add up to more than its wall time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

_LINE = re.compile(r"(\d\d:\d\d:\d\d\.\d+) \[debug\] \[[^\]]*\]: "
                   r"(Began|Finished) running node (\S+)")


@dataclass
class LogMark:
    """The current log file's inode and size when a command started."""

    inode: int | None
    offset: int

    @classmethod
    def of(cls, log_dir: Path) -> LogMark:
        current = log_dir / "dbt.log"
        try:
            st = current.stat()
            return cls(st.st_ino, st.st_size)
        except OSError:
            return cls(None, 0)


def _written_since(log_dir: Path, mark: LogMark) -> list[str]:
    """The log's lines written after ``mark``, oldest first."""
    files = sorted(log_dir.glob("dbt.log*"), key=lambda p: p.stat().st_mtime)
    inodes = [p.stat().st_ino for p in files]
    if mark.inode in inodes:  # the file the mark was in, wherever rotation moved it
        first = inodes.index(mark.inode)
        files, offsets = files[first:], [mark.offset] + [0] * (len(files) - first - 1)
    else:  # no log yet when the command started: everything there is is its own
        offsets = [0] * len(files)
    lines: list[str] = []
    for path, offset in zip(files, offsets, strict=True):
        with open(path, "rb") as f:
            f.seek(offset)
            lines += f.read().decode(errors="replace").splitlines()
    return lines


def node_seconds(log_dir: Path, mark: LogMark) -> dict[str, float]:
    """Seconds each node ran (summed when it ran more than once), by unique id."""
    began: dict[str, datetime] = {}
    seconds: dict[str, float] = {}
    last: datetime | None = None
    day = timedelta(0)
    for line in _written_since(log_dir, mark):
        m = _LINE.search(line)
        if not m:
            continue
        t = datetime.strptime(m.group(1), "%H:%M:%S.%f") + day
        if last is not None and t < last - timedelta(hours=12):  # past midnight
            day += timedelta(days=1)
            t += timedelta(days=1)
        last = t
        node = m.group(3)
        if m.group(2) == "Began":
            began[node] = t
        elif node in began:
            seconds[node] = seconds.get(node, 0.0) + (t - began.pop(node)).total_seconds()
    return seconds


def summary(seconds: dict[str, float], over: float = 5.0) -> dict[str, object]:
    """The models and the tests over ``over`` seconds, slowest first, and the total."""
    def pick(kinds: tuple[str, ...]) -> dict[str, float]:
        rows = [(k.split(".")[-2] if k.startswith("test.") else k.split(".")[-1], v)
                for k, v in seconds.items() if k.split(".")[0] in kinds and v > over]
        return {k: round(v, 1) for k, v in sorted(rows, key=lambda kv: -kv[1])}

    return {"node_seconds": round(sum(seconds.values()), 1),
            f"models_over_{over:g}s": pick(("model",)),
            f"tests_over_{over:g}s": pick(("test", "unit_test"))}
