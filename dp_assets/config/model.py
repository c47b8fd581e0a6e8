"""The pipeline's TOML config as a pydantic model: unknown keys and wrong types are errors."""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Spark SQL DDL types a design may declare; decimal(p,s) is matched separately.
SIMPLE_TYPES = {
    "string",
    "boolean",
    "int",
    "bigint",
    "long",
    "smallint",
    "tinyint",
    "double",
    "float",
    "date",
    "timestamp",
}
_DECIMAL = re.compile(r"^decimal\(\s*\d+\s*,\s*\d+\s*\)$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class General(_Strict):
    pipeline_name: str
    env: Literal["local", "dev", "integration", "preprod", "prod"] = "local"
    # Local paths are resolved against DP_HOME (default ./.dp); s3:// URIs are kept as they are.
    input_path: str
    output_path: str
    start_date: dt.date
    end_date: dt.date | None = None  # inclusive; None = partitions up to today

    @model_validator(mode="after")
    def _dates_ordered(self) -> General:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError(f"end_date {self.end_date} is before start_date {self.start_date}")
        return self


class Processing(_Strict):
    max_partitions: int = Field(default=400, ge=1, description="most daily partitions one run may cover")
    enable_deduplication: bool = False


class Spark(_Strict):
    launcher: Literal["local"] = "local"
    master: str = "local[*]"
    conf: dict[str, str] = Field(default_factory=dict)


class Catalog(_Strict):
    """Where loaded tables are registered: Spark's catalog (a Derby metastore under DP_HOME locally;
    on EMR the cluster's metastore, e.g. Glue)."""

    enabled: bool = True
    database: str | None = None  # default: general.pipeline_name


class Column(_Strict):
    name: str
    type: str
    nullable: bool = True
    description: str = ""

    @field_validator("name")
    @classmethod
    def _snake_case(cls, v: str) -> str:
        if not _IDENTIFIER.match(v):
            raise ValueError(f"column name {v!r} must be snake_case (letters, digits, _)")
        return v

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in SIMPLE_TYPES and not _DECIMAL.match(v):
            raise ValueError(f"unknown type {v!r}; use one of {sorted(SIMPLE_TYPES)} or decimal(p,s)")
        return v


class CsvFormat(_Strict):
    delimiter: str = ","
    header: bool = True
    null_value: str = ""
    encoding: str = "UTF-8"


class FileSource(_Strict):
    """Files dropped by upstream under `<input_path>/<prefix>/<YYYY-MM-DD>/`."""

    kind: Literal["files"] = "files"
    prefix: str
    format: Literal["csv"] = "csv"
    csv: CsvFormat = Field(default_factory=CsvFormat)


class QuarantinePolicy(_Strict):
    """How many quarantined rows a load tolerates before its check fails (both limits apply)."""

    max_ratio: float = Field(default=0.01, ge=0, le=1, description="quarantined / rows in")
    max_rows: int | None = Field(default=None, ge=0)


# Columns the load adds to every table; a design may not declare them.
ROW_HASH, LOAD_DATE = "row_hash", "load_date"


class Table(_Strict):
    description: str = ""
    partition_column: str = "partition_date"
    key: list[str] = Field(default_factory=list)
    source: FileSource
    columns: list[Column] = Field(min_length=1)
    # What a delivery column missing from the design does: join the table as a string column,
    # be dropped (and reported), or fail the load naming the column and file.
    evolution: Literal["add", "ignore", "fail"] = "add"
    # With processing.enable_deduplication: among rows sharing the key, keep the greatest by this
    # column (ties and no column: the last delivered line).
    dedup_order_by: str | None = None
    quarantine: QuarantinePolicy = Field(default_factory=QuarantinePolicy)

    @model_validator(mode="after")
    def _consistent(self) -> Table:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"columns declared twice: {dupes}")
        unknown = [k for k in self.key if k not in names]
        if unknown:
            raise ValueError(f"key columns {unknown} are not among the declared columns {names}")
        reserved = sorted({ROW_HASH, LOAD_DATE} & set(names)) + [n for n in names if n.startswith("_")]
        if reserved:
            raise ValueError(
                f"columns {reserved} are reserved: the load adds row_hash, load_date and _* columns"
            )
        if self.dedup_order_by is not None and self.dedup_order_by not in names:
            raise ValueError(
                f"dedup_order_by {self.dedup_order_by!r} is not among the declared columns {names}"
            )
        if self.partition_column in names:
            raise ValueError(
                f"partition_column {self.partition_column!r} is also a declared column; "
                "the partition column is added by the load from the delivery date"
            )
        return self


class PipelineConfig(_Strict):
    general: General
    processing: Processing = Field(default_factory=Processing)
    spark: Spark = Field(default_factory=Spark)
    catalog: Catalog = Field(default_factory=Catalog)
    tables: dict[str, Table] = Field(min_length=1)

    @property
    def catalog_database(self) -> str | None:
        if not self.catalog.enabled:
            return None
        return self.catalog.database or re.sub(r"[^a-z0-9_]", "_", self.general.pipeline_name.lower())

    @field_validator("tables")
    @classmethod
    def _table_names(cls, v: dict[str, Table]) -> dict[str, Table]:
        bad = [n for n in v if not _IDENTIFIER.match(n)]
        if bad:
            raise ValueError(f"table names {bad} must be snake_case (letters, digits, _)")
        return v
