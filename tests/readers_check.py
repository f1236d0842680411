"""Run by tests/test_readers.py in .venv-readers (no JVM, no recspark): what delta-rs, pandas,
polars and DuckDB read from a lakehouse, as one JSON line.

Usage: .venv-readers/bin/python tests/readers_check.py LAKEHOUSE TABLE [TABLE ...]
The first TABLE is read with every reader; each is opened with delta-rs and read whole.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import polars as pl
from deltalake import DeltaTable


def main() -> int:
    lakehouse, names = Path(sys.argv[1]), sys.argv[2:]
    out: dict[str, object] = {"tables": {}}
    for name in names:
        table = DeltaTable(str(lakehouse / name))
        protocol = table.protocol()
        arrow = table.to_pyarrow_table()
        out["tables"][name] = {  # type: ignore[index]
            "rows": arrow.num_rows,
            "min_reader_version": protocol.min_reader_version,
            "reader_features": sorted(protocol.reader_features or []),
        }
    first = str(lakehouse / names[0])
    frame = DeltaTable(first).to_pandas()
    columns = ["user_id", "rank", "item_id", "score"]
    rows = frame.sort_values(["user_id", "rank"])[columns]
    out["pandas"] = [[str(u), int(r), str(i), float(s)] for u, r, i, s in rows.itertuples(False)]
    polars = pl.read_delta(first).sort(["user_id", "rank"]).select(columns)
    out["polars"] = [[str(u), int(r), str(i), float(s)] for u, r, i, s in polars.iter_rows()]
    con = duckdb.connect()
    con.register("recommendations", DeltaTable(first).to_pyarrow_table())
    sql = "SELECT user_id, count(*), min(rank) FROM recommendations GROUP BY user_id"
    out["duckdb"] = {u: [int(n), int(b)] for u, n, b in con.sql(sql).fetchall()}
    print("READERS " + json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
