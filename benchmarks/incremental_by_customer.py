"""What the intermediates kept by customer cost: built whole, then for N touched customers.

Against a backfilled home (e.g. bench-scale's 1M x 365), runs ``dbt run`` of the models
kept by customer three times: as they are (the first build after upgrading is whole,
since there is no watermark yet), after logging ``--touched`` customers as changed by
their staging ancestors (the rows a night's staging builds would write into
``ops.dbt_touched_customers``), and with nothing touched.

    python -m benchmarks.incremental_by_customer --home H --date 2026-01-02 [--touched 30000]
        [--models int_interactions_enriched mart_customer_journeys]

``--models`` picks what to build (default: the two kept by customer); a model kept by key
that links on them, such as mart_customer_journeys, rebuilds what their builds rewrote.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

MODELS = ["int_interactions_enriched", "int_item_ratings_enriched"]
STAGING = ["stg_crm__interactions", "stg_survey__item_ratings"]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="a backfilled cxloop home")
    ap.add_argument("--date", type=date.fromisoformat, required=True,
                    help="the run date (the home's last built date)")
    ap.add_argument("--touched", type=int, default=30_000, help="customers to rebuild")
    ap.add_argument("--models", nargs="+", default=MODELS,
                    help=f"models to build (default: {' '.join(MODELS)})")
    args = ap.parse_args(argv)
    from flows import transform
    from flows.config import load_settings
    from flows.warehouse import open_warehouse

    settings = load_settings(home=str(args.home), landing=str(args.home / "landing"))
    wh = open_warehouse(args.home, settings.warehouse_url, settings.database)
    out: dict = {"home": str(args.home), "run_date": str(args.date), "models": args.models}
    for label in ("as_is", f"{args.touched}_customers_touched", "nothing_touched"):
        if label.endswith("customers_touched"):
            with wh.transaction() as cur:
                cur.execute("""insert into ops.dbt_touched_customers (model, built_at, customer_id)
                               select m, now(), c.customer_id
                               from (select customer_id from marts.dim_customers
                                     where is_current order by md5(customer_id) limit %s) c
                               cross join unnest(%s::text[]) m""", (args.touched, STAGING))
        t0 = time.perf_counter()
        res = transform.run_dbt(wh, settings, ["run", "--select", " ".join(args.models)], args.date)
        with wh.transaction() as cur:
            cur.execute("select model, full_build from ops.dbt_incremental_builds "
                        "where model = any(%s)", (args.models,))
            full = dict(cur.fetchall())
        out[label] = {"seconds": round(time.perf_counter() - t0, 1), "success": res.success,
                      "full_build": full}
        print(label, out[label], flush=True)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
