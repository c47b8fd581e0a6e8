"""The pipeline's TOML config as a pydantic model: unknown keys and wrong types are errors."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from spark_jobs.contract import LOAD_DATE, ROW_HASH, CsvOptions

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
_ENV_VAR = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_SNS_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$")
_CRON = re.compile(r"^\S+(\s+\S+){4}$")
# Dagster's rules for definition tags (asset tags are validated strictly): an optional namespace
# section and a name, each at most 63 of [A-Za-z0-9_.-]; values at most 63 of the same, or empty.
_TAG_KEY = re.compile(r"^([A-Za-z0-9_.-]{1,63}/)?[A-Za-z0-9_.-]{1,63}$")
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")
_OWNER = re.compile(r"^(team:\S+|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,7})$")
_GLOSSARY_TERM = re.compile(r"^[^\x00-\x1f]{1,200}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Env = Literal["local", "dev", "integration", "preprod", "prod"]
ENVS: tuple[str, ...] = ("local", "dev", "integration", "preprod", "prod")
# Where end-to-end test data must never stand in for the real source.
PROTECTED_ENVS = frozenset({"integration", "preprod", "prod"})


class General(_Strict):
    pipeline_name: str
    env: Env = "local"  # DP_ENV overrides it
    # Local paths are resolved against DP_HOME (default ./.dp); s3:// URIs are kept as they are.
    input_path: str
    output_path: str
    e2e_input_path: str = "e2e_landing"  # what `--e2e-test` reads instead of input_path
    start_date: dt.date
    end_date: dt.date | None = None  # inclusive; None = partitions up to today
    # Derived tables: every <transforms_path>/<name>.sql next to the config is one (see [derived]).
    transforms_path: str = "transforms"

    @model_validator(mode="after")
    def _dates_ordered(self) -> General:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError(f"end_date {self.end_date} is before start_date {self.start_date}")
        return self


class Processing(_Strict):
    max_partitions: int = Field(default=400, ge=1, description="most daily partitions one run may cover")
    enable_deduplication: bool = False
    retention_days: int = Field(
        default=7, ge=1, description="days the source keeps a delivery; older gaps cannot be caught up"
    )
    keep_superseded_hours: float = Field(
        default=24.0,
        ge=0,
        description="how long a replaced partition version stays readable (for queries that started "
        "before the switch) before it is deleted",
    )
    table_lock_wait_seconds: float = Field(
        default=3600.0, ge=0, description="how long a run waits for another live run writing the same table"
    )


LAUNCHERS: tuple[str, ...] = ("local", "emr", "emr-existing", "emr-serverless")
Launcher = Literal["local", "emr", "emr-existing", "emr-serverless"]
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]+$")


def _role_arn(value: str) -> str:
    if not _ROLE_ARN.match(value):
        raise ValueError(f"{value!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    return value


RoleArn = Annotated[str, AfterValidator(_role_arn)]


class BootstrapAction(_Strict):
    name: str
    path: str  # s3:// script run on every node before applications start
    args: list[str] = Field(default_factory=list)


class EmrCluster(_Strict):
    """launcher = "emr": a transient cluster per run, terminated when its step ends."""

    cluster_name: str = "dp"  # each cluster is named "<cluster_name> <run id> <script>"
    release_label: str = "emr-7.5.0"
    applications: list[str] = Field(default_factory=lambda: ["Spark"])
    master_instance_type: str = "m5.xlarge"
    core_instance_type: str = "m5.xlarge"
    core_instance_count: int = Field(default=2, ge=0)
    subnet_id: str | None = None
    job_flow_role: str = "EMR_EC2_DefaultRole"  # instance profile the nodes (and the job) run as
    service_role: str = "EMR_DefaultRole"
    bootstrap_actions: list[BootstrapAction] = Field(default_factory=list)
    # EMR Configurations, e.g. the Glue Data Catalog as the metastore (see README).
    configurations: list[dict[str, Any]] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)


class Emr(_Strict):
    """Where the EMR launchers send jobs, and how they wait for them."""

    # The release whose spark_jobs/ the cluster runs; default: the release the config was loaded
    # from (CONFIG_S3_URI as `dp deploy` printed it).
    release_uri: str | None = None
    messages_uri: str  # s3:// folder for the Pipes context and messages of each run
    log_uri: str | None = None  # EMR's LogUri / Serverless logUri: where step stdout and stderr land
    region: str | None = None
    poll_interval_seconds: float = Field(default=30.0, gt=0)
    max_wait_seconds: float = Field(default=6 * 3600.0, gt=0, description="then cancel and fail")
    log_wait_seconds: float = Field(default=120.0, ge=0, description="wait for step logs after the end")
    cluster: EmrCluster = Field(default_factory=EmrCluster)
    cluster_id: str | None = None  # launcher = "emr-existing": the running cluster (j-…)
    application_id: str | None = None  # launcher = "emr-serverless": the application (00…)
    execution_role_arn: RoleArn | None = None  # launcher = "emr-serverless": the role the job runs as
    # The interpreter the jobs run on; default: the release's Python 3.11 (see the README's releases).
    python: str | None = None

    @field_validator("release_uri", "messages_uri", "log_uri")
    @classmethod
    def _s3_uris(cls, v: str | None) -> str | None:
        if v is not None and not _S3_URI.match(v):
            raise ValueError(f"{v!r} is not an s3://bucket/prefix URI")
        return v


class Spark(_Strict):
    launcher: Launcher = "local"  # DP_SPARK_LAUNCHER overrides it
    master: str = "local[*]"  # the local launcher's master
    # The local launcher: a run whose deliveries total less starts Spark's JVM with the quick JIT
    # compiler only, which a short run repays and a long one does not; 0: always both compilers.
    quick_jit_below_mb: int = Field(32, ge=0)
    conf: dict[str, str] = Field(default_factory=dict)  # spark-submit --conf, for every launcher
    ansi: bool = True  # spark.sql.ansi.enabled for every job and for `dp validate`, on every release
    emr: Emr | None = None  # required by the EMR launchers

    @field_validator("conf")
    @classmethod
    def _not_pinned(cls, conf: dict[str, str]) -> dict[str, str]:
        pinned = {
            "spark.sql.ansi.enabled": "set [spark] ansi instead",
            "spark.sql.session.timeZone": "dp runs every job in UTC",
            "spark.pyspark.python": "set [spark.emr] python, or DP_SPARK_PYTHON locally",
            "spark.pyspark.driver.python": "set [spark.emr] python, or DP_SPARK_PYTHON locally",
        }
        for key in conf:
            if key in pinned:
                raise ValueError(f"{key} is pinned by dp: {pinned[key]}")
        return conf

    @model_validator(mode="after")
    def _emr_settings(self) -> Spark:
        check_launcher_settings(self, self.launcher)
        return self


def check_launcher_settings(spark: Spark, launcher: str) -> None:
    """What each launcher needs from [spark.emr], named by key, or ValueError."""
    if launcher == "local":
        return
    if spark.emr is None:
        raise ValueError(f'launcher "{launcher}" needs a [spark.emr] section with at least messages_uri')
    need = {"emr-existing": ["cluster_id"], "emr-serverless": ["application_id", "execution_role_arn"]}
    missing = [k for k in need.get(launcher, []) if getattr(spark.emr, k) is None]
    if missing:
        raise ValueError(f'launcher "{launcher}" needs [spark.emr] {" and ".join(missing)}')


class Catalog(_Strict):
    """Where loaded tables are registered: Spark's catalog (a Derby metastore under DP_HOME locally;
    on EMR the cluster's metastore, e.g. Glue)."""

    enabled: bool = True
    database: str | None = None  # default: general.pipeline_name


class Secondary(_Strict):
    """A second environment every run also publishes the same dump into, after the primary: its own
    lake and catalog database (a pre-production copy fed by production's deliveries, say). What fails
    there is a warning on the table's ``published_to_secondary`` check; the primary is never failed
    or rolled back for it."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="names it in messages and check results")
    output_path: str  # its lake: an S3 URI or a local folder, never the primary's
    catalog_database: str | None = None  # default: <the primary's database>_<name>


class Automation(_Strict):
    """When the nightly schedule ticks and how the new-data sensors look at the landing zone."""

    timezone: str = "UTC"  # the schedule's execution_timezone; "yesterday" is counted in it
    nightly_cron: str = "0 2 * * *"
    sensor_interval_seconds: int = Field(default=60, ge=5)
    sensor_max_keys: int = Field(default=10_000, ge=1, description="new keys one sensor tick takes at most")
    rewrite_lookback_days: int = Field(
        default=3, ge=0, description="days before the newest delivery each tick re-lists to see rewrites"
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}; use an IANA name, e.g. 'Europe/London'") from e
        return v

    @field_validator("nightly_cron")
    @classmethod
    def _five_fields(cls, v: str) -> str:
        if not _CRON.match(v.strip()):
            raise ValueError(f"{v!r} is not a five-field cron expression such as '0 2 * * *'")
        return v.strip()


class Notify(_Strict):
    """Where run notifications go. URLs are secrets: the config names the environment variables."""

    dagster_url: str = "http://localhost:3000"  # runs are linked as <dagster_url>/runs/<run_id>
    sns_topic_arn: str | None = None  # non-prod: one topic for successes and failures
    sns_info_topic_arn: str | None = None  # prod: successes
    sns_paging_topic_arn: str | None = None  # prod: failures (pages someone)
    slack_webhook_env: str | None = None  # e.g. "DP_SLACK_WEBHOOK_URL"
    deadman_url_env: str | None = None  # e.g. "DP_DEADMAN_URL"

    @field_validator("sns_topic_arn", "sns_info_topic_arn", "sns_paging_topic_arn")
    @classmethod
    def _topic_arn(cls, v: str | None) -> str | None:
        if v is not None and not _SNS_ARN.match(v):
            raise ValueError("not an SNS topic ARN; expected arn:aws:sns:<region>:<account>:<topic>")
        return v

    @field_validator("slack_webhook_env", "deadman_url_env")
    @classmethod
    def _names_a_variable(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_VAR.match(v):
            raise ValueError(
                "give the NAME of the environment variable holding the URL (e.g. DP_SLACK_WEBHOOK_URL), "
                "not the URL itself: the URL is a secret and must stay out of the config"
            )
        return v

    @property
    def enabled(self) -> bool:
        return any(
            (
                self.sns_topic_arn,
                self.sns_info_topic_arn,
                self.sns_paging_topic_arn,
                self.slack_webhook_env,
                self.deadman_url_env,
            )
        )


Severity = Literal["low", "medium", "high"]
# The scan's managed identifiers and their default severities (`[governance] severity` overrides).
MANAGED_IDENTIFIERS: dict[str, Severity] = {
    "email": "medium",
    "phone": "medium",
    "credit_card": "high",
    "us_ssn": "high",
    "ipv4": "low",
    "ipv6": "low",
    "iban": "high",
}
SENSITIVE_TERM = "Classification.Sensitive"  # the glossary term every column declared sensitive gets


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        if not _TAG_KEY.match(key) or key.startswith(("dagster/", "glossary/")):
            raise ValueError(
                f"tag key {key!r}: use at most 63 of A-Z a-z 0-9 _ . - (optionally one 'namespace/' "
                "section); the dagster/ and glossary/ namespaces are reserved"
            )
        if not _TAG_VALUE.match(value):
            raise ValueError(f"tag {key!r}: the value {value!r} must be at most 63 of A-Z a-z 0-9 _ . -")
    return tags


def _check_terms(terms: list[str]) -> list[str]:
    bad = [t for t in terms if not _GLOSSARY_TERM.match(t) or not t.strip()]
    if bad:
        raise ValueError(f"glossary terms {bad} must be 1-200 printable characters, e.g. 'PII.Email'")
    return terms


class _Catalogued(_Strict):
    """Tags and glossary terms as a table or a column carries them into the catalog (and the UI)."""

    glossary_terms: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_tags(v)

    @field_validator("glossary_terms")
    @classmethod
    def _terms(cls, v: list[str]) -> list[str]:
        return _check_terms(v)


class Column(_Catalogued):
    name: str
    type: str
    nullable: bool = True
    description: str = ""
    # Declared to hold sensitive data: the scan reports findings here but takes no action, and the
    # column carries the glossary term Classification.Sensitive.
    sensitive: bool = False

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

    def options(self) -> CsvOptions:
        """The dump's parser options (the contract's dataclass, free of pydantic)."""
        return CsvOptions(**self.model_dump())


class FileSource(_Strict):
    """Files dropped by upstream under `<input_path>/<prefix>/<YYYY-MM-DD>/`."""

    kind: Literal["files"] = "files"
    prefix: str
    # csv; jsonl (one JSON object per line; nested values kept as JSON text); parquet. Any of them
    # compressed with gzip, bzip2 or zstd: read from the bytes, whatever the suffix says.
    format: Literal["csv", "jsonl", "parquet"] = "csv"
    csv: CsvFormat = Field(default_factory=CsvFormat)  # jsonl reads its encoding only


_SQL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


class PostgresSource(_Strict):
    """Rows of a PostgreSQL table, extracted per day by the dump (Arthur's extract_settings).

    Without ``date_column`` each day's partition is a full snapshot of the table (dimension
    tables); with it, a day holds the rows whose ``date_column`` falls on that day. The connection
    string comes from the environment variable ``dsn_env``, never from the config.
    """

    kind: Literal["postgres"]
    dsn_env: str
    schema_name: str = Field(default="public", alias="schema")
    table: str
    date_column: str | None = None
    condition: str | None = Field(default=None, description="an extra SQL filter, e.g. \"carrier <> 'ZZ'\"")
    split_by: str | None = Field(
        default=None, description="an integer column: extract in `splits` ranges of it, one file each"
    )
    splits: int = Field(default=4, ge=1, le=64)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("dsn_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not _ENV_VAR.match(v):
            # the value is not echoed: a connection string pasted here may hold a password
            raise ValueError(
                "dsn_env must be the NAME of an environment variable holding the connection string "
                "(like DP_PG_DSN), not the connection string itself"
            )
        return v

    @field_validator("schema_name", "table", "date_column", "split_by")
    @classmethod
    def _sql_name(cls, v: str | None) -> str | None:
        if v is not None and not _SQL_NAME.match(v):
            raise ValueError(f"{v!r} is not a plain SQL identifier")
        return v

    @property
    def qualified(self) -> str:
        return f'"{self.schema_name}"."{self.table}"'

    @property
    def csv(self) -> CsvFormat:
        """How the extract is written: PostgreSQL's COPY CSV (header, empty unquoted = NULL)."""
        return CsvFormat()


def _source_kind(value: object) -> str:
    """`kind` picks the source model; files are the default, so existing configs need no `kind`."""
    return str(value.get("kind", "files") if isinstance(value, dict) else getattr(value, "kind", "files"))


Source = Annotated[
    Annotated[FileSource, Tag("files")] | Annotated[PostgresSource, Tag("postgres")],
    Discriminator(_source_kind),
]


class QuarantinePolicy(_Strict):
    """How many quarantined rows a load tolerates before its check fails (both limits apply)."""

    max_ratio: float = Field(default=0.01, ge=0, le=1, description="quarantined / rows in")
    max_rows: int | None = Field(default=None, ge=0)


class SensitiveScan(_Strict):
    """The dump's scan of each staged file for sensitive data (see stages/sensitive.py)."""

    enabled: bool = True
    sample_rows: int | None = Field(
        default=None, ge=1, description="rows scanned per file, drawn at random; unset = every row"
    )
    # What a high-severity finding in a column NOT declared sensitive does: move the day's delivery
    # to the isolation zone and fail the dump's blocking check, or rewrite the column in the staged
    # file (sha256 of each value, or a fixed mask) and continue.
    action: Literal["isolate", "mask", "hash"] = "isolate"


class Table(_Catalogued):
    description: str = ""
    partition_column: str = "partition_date"
    key: list[str] = Field(default_factory=list)
    source: Source
    columns: list[Column] = Field(min_length=1)
    # What a delivery column missing from the design does: join the table as a string column,
    # be dropped (and reported), or fail the load naming the column and file.
    evolution: Literal["add", "ignore", "fail"] = "add"
    # With processing.enable_deduplication: among rows sharing the key, keep the greatest by this
    # column (ties and no column: the last delivered line).
    dedup_order_by: str | None = None
    quarantine: QuarantinePolicy = Field(default_factory=QuarantinePolicy)
    # Catalog metadata shown in the UI: owners are emails or "team:<name>".
    owners: list[str] = Field(default_factory=list)
    scan: SensitiveScan = Field(default_factory=SensitiveScan)

    @field_validator("owners")
    @classmethod
    def _owners(cls, v: list[str]) -> list[str]:
        bad = [o for o in v if not _OWNER.match(o)]
        if bad:
            raise ValueError(f"owners {bad} must be email addresses or 'team:<name>'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Table:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"columns declared twice: {dupes}")
        unknown = [k for k in self.key if k not in names]
        if unknown:
            raise ValueError(f"key columns {unknown} are not among the declared columns {names}")
        # the columns the load adds to every table (spark_jobs/contract.py) may not be declared
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


class CustomIdentifier(_Strict):
    """A custom data identifier (as in Macie): a regex that counts only in columns whose name
    contains one of the keywords (case-insensitive)."""

    name: str
    regex: str  # RE2 syntax (what pyarrow.compute runs): no look-arounds or back-references
    keywords: list[str] = Field(min_length=1)
    severity: Severity = "high"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _IDENTIFIER.match(v):
            raise ValueError(f"identifier name {v!r} must be snake_case (letters, digits, _)")
        if v in MANAGED_IDENTIFIERS:
            raise ValueError(f"{v!r} is a managed identifier; give the custom identifier another name")
        return v

    @field_validator("regex")
    @classmethod
    def _re2(cls, v: str) -> str:
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            pc.match_substring_regex(pa.array([""]), v)
        except pa.ArrowInvalid as e:
            raise ValueError(f"not a valid RE2 regular expression: {e}") from None
        return v

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, v: list[str]) -> list[str]:
        if any(not k.strip() for k in v):
            raise ValueError("keywords must not be empty strings")
        return [k.strip().lower() for k in v]


class Governance(_Strict):
    """Pipeline-wide settings of the sensitive-data scan."""

    custom_identifiers: list[CustomIdentifier] = Field(default_factory=list)
    severity: dict[str, Severity] = Field(
        default_factory=dict, description="override a managed identifier's severity, e.g. email = 'high'"
    )
    # scan.action = "hash": with this variable set, values are hashed as HMAC-SHA256 keyed with its
    # content (low-entropy values such as SSNs cannot then be recovered by hashing every candidate).
    hash_key_env: str | None = None

    @field_validator("severity")
    @classmethod
    def _managed(cls, v: dict[str, Severity]) -> dict[str, Severity]:
        unknown = sorted(set(v) - set(MANAGED_IDENTIFIERS))
        if unknown:
            raise ValueError(f"{unknown} are not managed identifiers; use one of {list(MANAGED_IDENTIFIERS)}")
        return v

    @field_validator("hash_key_env")
    @classmethod
    def _names_a_variable(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_VAR.match(v):
            raise ValueError("give the NAME of the environment variable holding the hash key, not the key")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> Governance:
        names = [c.name for c in self.custom_identifiers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"custom identifiers declared twice: {dupes}")
        return self


class OpenLineage(_Strict):
    """Emit a RunEvent per materialization of the dump and load assets to an OpenLineage endpoint
    (e.g. Marquez's ``/api/v1/lineage``). The URL may carry a token: the config names the variable."""

    url_env: str | None = None  # e.g. "DP_OPENLINEAGE_URL"; unset = no emission
    namespace: str | None = None  # the jobs' namespace; default general.pipeline_name

    @field_validator("url_env")
    @classmethod
    def _names_a_variable(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_VAR.match(v):
            raise ValueError(
                "give the NAME of the environment variable holding the endpoint URL (e.g. "
                "DP_OPENLINEAGE_URL), not the URL itself"
            )
        return v


class Derived(_Catalogued):
    """Optional settings of a derived table (its SQL is `<transforms_path>/<name>.sql`)."""

    description: str = ""
    # The SQL's output column that holds the day; default: the partition column its upstream
    # tables share (set it when they differ).
    partition_column: str | None = None
    # Output columns unique per partition; checked (key_unique) before the table is published.
    key: list[str] = Field(default_factory=list)
    owners: list[str] = Field(default_factory=list)


class Aws(_Strict):
    """Data access across accounts (the seed's ADG pattern): the landing zone and the lake are reached
    with credentials from assuming each role of the chain in turn, refreshed before they expire. EMR
    and the Pipes transport keep the run's own credentials."""

    role_chain: list[RoleArn] = Field(default_factory=list)
    session_name: str = Field(default="dp", pattern=r"^[\w+=,.@-]{2,64}$")
    duration_seconds: int = Field(default=3600, ge=900, le=43200)


class Deploy(_Strict):
    """Where `dp deploy` publishes releases: s3://<bucket>/<env>/<pipeline>/releases/<id>/."""

    bucket: str | None = None


class PipelineConfig(_Strict):
    general: General
    processing: Processing = Field(default_factory=Processing)
    spark: Spark = Field(default_factory=Spark)
    catalog: Catalog = Field(default_factory=Catalog)
    automation: Automation = Field(default_factory=Automation)
    notify: Notify = Field(default_factory=Notify)
    governance: Governance = Field(default_factory=Governance)
    openlineage: OpenLineage = Field(default_factory=OpenLineage)
    tables: dict[str, Table] = Field(min_length=1)
    derived: dict[str, Derived] = Field(default_factory=dict)
    deploy: Deploy = Field(default_factory=Deploy)
    aws: Aws = Field(default_factory=Aws)
    secondary: Secondary | None = None

    @property
    def catalog_database(self) -> str | None:
        if not self.catalog.enabled:
            return None
        return self.catalog.database or re.sub(r"[^a-z0-9_]", "_", self.general.pipeline_name.lower())

    def secondary_environment(self) -> PipelineConfig | None:
        """This config publishing into [secondary]'s lake and catalog database instead (the landing
        zone, the raw zone and the staged rows stay the primary's); None without [secondary]."""
        s = self.secondary
        if s is None:
            return None
        database = s.catalog_database or (
            f"{self.catalog_database}_{s.name}" if self.catalog_database else None
        )
        return self.model_copy(
            update={
                "general": self.general.model_copy(update={"output_path": s.output_path}),
                "catalog": self.catalog.model_copy(update={"database": database}),
                "secondary": None,
            }
        )

    @model_validator(mode="after")
    def _secondary_is_elsewhere(self) -> PipelineConfig:
        """Its database; its lake is compared once resolved (``LoadedConfig.secondary_environment``)."""
        s = self.secondary
        if s is None:
            return self
        if s.catalog_database is not None and s.catalog_database == self.catalog_database:
            raise ValueError(
                f"secondary.catalog_database {s.catalog_database!r} is the primary's catalog database: "
                "the secondary environment needs a database of its own"
            )
        return self

    @field_validator("tables")
    @classmethod
    def _table_names(cls, v: dict[str, Table]) -> dict[str, Table]:
        bad = [n for n in v if not _IDENTIFIER.match(n)]
        if bad:
            raise ValueError(f"table names {bad} must be snake_case (letters, digits, _)")
        return v

    @model_validator(mode="after")
    def _topics_match_env(self) -> PipelineConfig:
        n, env = self.notify, self.general.env
        if env == "prod":
            if n.sns_topic_arn:
                raise ValueError(
                    "notify.sns_topic_arn is the non-prod combined topic; in prod set "
                    "notify.sns_info_topic_arn and notify.sns_paging_topic_arn"
                )
            if bool(n.sns_info_topic_arn) != bool(n.sns_paging_topic_arn):
                raise ValueError("prod needs both notify.sns_info_topic_arn and notify.sns_paging_topic_arn")
        elif n.sns_info_topic_arn or n.sns_paging_topic_arn:
            raise ValueError(
                f"notify.sns_info_topic_arn/sns_paging_topic_arn are for prod; env {env!r} uses the one "
                "combined topic notify.sns_topic_arn"
            )
        return self
