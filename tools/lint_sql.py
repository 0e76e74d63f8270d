"""Lint the dbt SQL with sqlfluff's dbt templater against a throwaway embedded warehouse.

The dbt templater compiles every model, and compiling opens a connection (the
project's macros ask the adapter about relations), so a plain `sqlfluff lint`
fails on a machine without a running Postgres. This starts a temporary embedded
server, points dbt's profile at it, lints, and stops the server.

    python tools/lint_sql.py [paths...]   (default: dbt_project/models dbt_project/tests)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.warehouse import open_warehouse, stop_embedded  # noqa: E402


def main(argv: list[str]) -> int:
    paths = argv or ["dbt_project/models", "dbt_project/tests"]
    home = Path(tempfile.mkdtemp(prefix="cxlint-", dir="/tmp"))
    try:
        wh = open_warehouse(home)
        env = {**os.environ, **wh.dbt_env()}
        sqlfluff = Path(sys.executable).with_name("sqlfluff")
        return subprocess.call([str(sqlfluff), "lint", *paths, "--processes", "2"], env=env,
                               cwd=ROOT)
    finally:
        stop_embedded(home)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
