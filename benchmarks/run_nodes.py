"""One ``cxloop run`` on a kept home, with the code of a given checkout: its stages'
seconds (the run's own JSON summary) and the seconds of each dbt model, from dbt's log
(``benchmarks.dbt_nodes``).

Made to compare two versions of the code night for night on the same warehouse: restore
the home's ``pgdata`` from a copy, run the nights with one checkout (``git worktree add
../old <sha>``, with a ``.venv`` that can import it), restore again, run the same nights
with the other. Whole-run seconds on a busy 2-core box vary by more than a model's change;
the per-model seconds of the same nights are what compare.

    python -m benchmarks.run_nodes --home H --date D [--code DIR] [--label L] [--out FILE]

``--out`` appends the result to a JSON list (created if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.dbt_nodes import LogMark, node_seconds

ROOT = Path(__file__).resolve().parent.parent


def run_night(home: Path, day: str, code: Path = ROOT, label: str = "") -> dict[str, object]:
    """Run ``cxloop run --date day`` with ``code``'s flows; what it took, stage by stage."""
    logs = home / "dbt" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    mark = LogMark.of(logs)
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "flows", "run", "--date", day, "--landing", str(home / "landing"),
         "--json"],
        cwd=code, env={**os.environ, "CXLOOP_HOME": str(home)}, capture_output=True, text=True)
    wall = time.time() - started
    stages: object
    try:
        summary = json.loads(proc.stdout[proc.stdout.index("{"):])
        stages = {name: stage["seconds"] for name, stage in summary["stages"].items()}
    except (ValueError, KeyError, TypeError):
        stages = (proc.stdout[-2000:] + proc.stderr[-2000:]).strip()
    models = {node.split(".")[-1]: round(seconds, 1)
              for node, seconds in node_seconds(logs, mark).items()
              if node.startswith("model.") and seconds >= 1.0}
    return {"label": label, "code": str(code), "date": day, "returncode": proc.returncode,
            "wall_seconds": round(wall, 1), "stages": stages,
            "models_over_1s": dict(sorted(models.items(), key=lambda kv: -kv[1]))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, required=True, help="a kept cxloop home (with landing)")
    ap.add_argument("--date", required=True, help="the run date YYYY-MM-DD")
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose flows run")
    ap.add_argument("--label", default="", help="a name for this night in the output")
    ap.add_argument("--out", type=Path, help="JSON list to append the result to")
    args = ap.parse_args(argv)
    result = run_night(args.home.resolve(), args.date, args.code.resolve(), args.label)
    print(json.dumps(result, indent=1))
    if args.out:
        kept = json.loads(args.out.read_text()) if args.out.exists() else []
        args.out.write_text(json.dumps([*kept, result], indent=1) + "\n")
    return 0 if result["returncode"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
