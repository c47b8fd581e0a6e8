"""The one contract between dp_assets and spark_jobs: what the orchestrator sends is exactly what the
job's TypedDicts declare, and the shipped code needs nothing a cluster lacks. No Spark: a rename here
fails in a second, not in a Spark run."""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import os
import subprocess
import sys
import typing
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

import dagster as dg

from dp_assets.config.loader import PACKAGED, load_config_from
from dp_assets.definitions import build_definitions
from dp_assets.demo import write_flight_deliveries
from dp_assets.lake import Lake
from dp_assets.launchers.base import Reported, spark_jobs_dir, spark_jobs_zip
from dp_assets.stages.derive import derived_tables
from dp_assets.stages.dump import dump_spec, scan_policy
from dp_assets.stages.load import load_request
from spark_jobs import contract
from spark_jobs.evolution import completed, manifests_in
from spark_jobs.storage import write_json

# What a cluster has: the standard library, pyspark, and boto3 (on every EMR image; only the S3
# Pipes transport imports it). Everything else must be in spark_jobs.zip.
ON_EVERY_CLUSTER = {"pyspark", "boto3", "botocore", "dagster_pipes", "spark_jobs"}
# What the dump's data plane (spark_jobs/dumping) needs besides: no cluster has it, so a job imports
# it only when it dumps (layout.py, standard library only, aside).
DUMPING_NEEDS = {"pyarrow", "numpy"}


def test_load_spec_is_exactly_the_contract(isolated_home: Path) -> None:
    """What the orchestrator sends is a LoadRequest; completed from the manifests, a LoadSpec."""
    loaded = load_config_from(PACKAGED, home=isolated_home)
    lake = Lake(loaded)
    day = "2013-01-01"
    write_json(lake.store, lake.manifest_path("flights", day), {"files": [], "rows": 0})
    request = load_request(loaded, "flights")
    assert set(request) == contract.LoadRequest.__required_keys__
    spec, _ = completed(request, manifests_in(lake.store, request, [day]))
    assert set(spec) == contract.LoadSpec.__required_keys__
    assert {*spec["columns"][0]} == contract.ColumnSpec.__required_keys__
    assert set(spec["dedup"]) == contract.DedupSpec.__required_keys__
    assert set(spec["quarantine"]) == contract.QuarantineSpec.__required_keys__


def test_derive_spec_is_exactly_the_contract(isolated_home: Path) -> None:
    loaded = load_config_from(PACKAGED, home=isolated_home)
    (table,) = derived_tables(loaded)
    spec = table.spec(Lake(loaded))
    assert set(spec) == contract.DeriveSpec.__required_keys__
    for upstream in spec["upstream"].values():
        assert set(upstream) == contract.UpstreamSpec.__required_keys__


def test_declared_checks_are_the_contracts(isolated_home: Path) -> None:
    defs = build_definitions(load_config_from(PACKAGED, home=isolated_home))
    declared = {
        spec.name
        for asset in defs.assets  # type: ignore[union-attr]
        if isinstance(asset, dg.AssetsDefinition)
        for spec in asset.check_specs
        if spec.asset_key == dg.AssetKey("flights")
    }
    assert declared == set(contract.LOAD_CHECKS)


class ReceivingSession:
    """A Pipes session's two queues as its reader thread fills them."""

    def __init__(self) -> None:
        self.messages: list[object] = []
        self.results: list[dg.MaterializeResult] = []

    def get_custom_messages(self) -> tuple[object, ...]:
        return tuple(self.messages)

    def get_results(self, implicit_materializations: bool, metadata: object) -> tuple[object, ...]:
        assert not implicit_materializations  # the job reports each asset itself
        return tuple(self.results)


def test_what_a_job_reported_is_handed_on_once_messages_first() -> None:
    session = ReceivingSession()
    reported = Reported(session)  # type: ignore[arg-type]
    assert reported.new() == []
    dumped = {contract.DUMPED_MESSAGE: {"table": "flights", "seconds": 1.0}}
    loaded = dg.MaterializeResult(asset_key="flights")
    session.messages.append(dumped)
    session.results.append(loaded)
    assert reported.new() == [dumped, loaded]  # the dump's message before its table's load
    outcome = {contract.OUTCOME_MESSAGE: {"failed": {}, "not_run": {}}}
    session.messages += ["not a dict", outcome]
    assert reported.new() == [outcome]
    assert reported.new() == []


def imported_modules(source: str, unconditional_only: bool = False) -> set[str]:
    """Top-level names a module imports; with ``unconditional_only``, those at module level only
    (not inside functions or ``try`` blocks, which is how dagster_pipes imports optional extras)."""
    tree = ast.parse(source)
    modules = set()
    for node in tree.body if unconditional_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def test_shipped_code_imports_only_what_every_cluster_has() -> None:
    """The cluster side is pyspark and the standard library; dagster_pipes and spark_jobs ship in
    the zip. (The emulator's steps run with only the release's files: test_emr_pipeline.py.)"""
    shipped = zipfile.ZipFile(BytesIO(spark_jobs_zip()))
    names = set(shipped.namelist())
    for path in sorted(spark_jobs_dir().rglob("*.py")):
        name = path.relative_to(spark_jobs_dir()).as_posix()
        assert f"spark_jobs/{name}" in names
        source = path.read_text()
        allowed = ON_EVERY_CLUSTER | (DUMPING_NEEDS if name.startswith("dumping/") else set())
        foreign = imported_modules(source) - set(sys.stdlib_module_names) - allowed
        assert not foreign, f"{name} imports {sorted(foreign)}, which no cluster has"
        if not name.startswith("dumping/"):  # a job that only loads needs nothing beyond the cluster's
            eager = {
                node.module
                for node in ast.parse(source).body
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spark_jobs.dumping")
            }
            assert eager <= {"spark_jobs.dumping.layout"}, f"{name} imports {eager} at module level"
    for name in names:
        if name.startswith("dagster_pipes/") and name.endswith(".py"):
            source = shipped.read(name).decode()
            foreign = imported_modules(source, unconditional_only=True) - set(sys.stdlib_module_names)
            assert foreign <= {"dagster_pipes"}, (name, foreign)


def test_importing_the_code_location_builds_nothing(tmp_path: Path) -> None:
    """Definitions are built lazily (``@dg.definitions``): a CLI run with its own config never loads
    the environment's config first. Here that config is unreachable, so building it would fail."""
    env = {
        **os.environ,
        "CONFIG_S3_URI": "s3://no-such-bucket/config.toml",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-c", "import dp_assets.definitions, dp_assets.runner, dp_assets.cli"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "config" not in done.stderr.lower(), done.stderr


def test_dump_spec_is_exactly_the_contract(isolated_home: Path) -> None:
    loaded = load_config_from(PACKAGED, home=isolated_home)
    lake = Lake(loaded)
    write_flight_deliveries(lake, dt.date(2013, 1, 1), dt.date(2013, 1, 1))
    spec = dump_spec(lake, "flights", ["2013-01-01"], scan_policy(loaded, loaded.config.tables["flights"]))
    assert set(spec) == contract.DumpSpec.__required_keys__
    assert spec["scan"] is not None and set(spec["scan"]) == contract.ScanSpec.__required_keys__
    assert set(spec["scan"]["identifiers"][0]) == contract.IdentifierSpec.__required_keys__
    assert set(spec["delivered"]["2013-01-01"][0]) == contract.DeliveredFile.__required_keys__
    assert set(spec["csv"]) == {f.name for f in dataclasses.fields(contract.CsvOptions)}


def contract_dicts() -> dict[str, Any]:
    """Each TypedDict of the contract, by name."""
    return {name: kind for name, kind in vars(contract).items() if typing.is_typeddict(kind)}


def annotated_as(annotation: ast.expr | None, known: dict[str, Any]) -> str | None:
    """The contract TypedDict an annotation names (``X``, ``"X"``, ``X | None``), if any."""
    if isinstance(annotation, ast.Name) and annotation.id in known:
        return annotation.id
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return annotation.value if annotation.value in known else None
    if isinstance(annotation, ast.BinOp):
        return annotated_as(annotation.left, known) or annotated_as(annotation.right, known)
    return None


def key_uses(source: str, known: dict[str, Any]) -> tuple[int, list[str]]:
    """How many keys a module's functions name on a contract TypedDict, and where one is not its: a
    dict literal assigned to a name annotated with it (or one missing a required key), and
    ``name["key"]`` or ``name.get("key")`` on an argument or a name annotated with it."""
    uses, misuses = 0, []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        typed = {
            arg.arg: kind
            for arg in [*function.args.args, *function.args.kwonlyargs]
            if (kind := annotated_as(arg.annotation, known))
        }
        for node in ast.walk(function):
            if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
                continue
            kind = annotated_as(node.annotation, known)
            if kind is None:
                continue
            typed[node.target.id] = kind
            if isinstance(node.value, ast.Dict):
                declared = known[kind].__required_keys__ | known[kind].__optional_keys__
                keys = {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
                spread = None in node.value.keys  # {**other, ...}: the required keys may come from it
                missing = set() if spread else known[kind].__required_keys__ - keys
                uses += len(keys)
                misuses += [f"line {node.lineno}: {kind} literal, key {k!r}" for k in sorted(keys - declared)]
                misuses += [f"line {node.lineno}: {kind} literal lacks {k!r}" for k in sorted(missing)]
        for node in ast.walk(function):
            name = key = None
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
                name, key = node.value.id, node.slice
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and isinstance(node.func.value, ast.Name)
                and node.args
            ):
                name, key = node.func.value.id, node.args[0]
            if name not in typed or not isinstance(key, ast.Constant):
                continue
            uses += 1
            kind = known[typed[name]]
            if key.value not in kind.__required_keys__ | kind.__optional_keys__:
                misuses.append(f"line {node.lineno}: {name}[{key.value!r}], not a key of {typed[name]}")
    return uses, misuses


def test_both_sides_name_only_the_contracts_keys() -> None:
    """A key renamed in ``contract`` (or misspelt on one side) fails here, in a second: every dict
    literal, subscript and ``get`` on a variable or argument annotated with a contract TypedDict, in
    dp_assets and spark_jobs, uses that TypedDict's keys."""
    known = contract_dicts()
    root = spark_jobs_dir().parent
    total, misuses = 0, {}
    for package in ("dp_assets", "spark_jobs"):
        for path in sorted((root / package).rglob("*.py")):
            uses, found = key_uses(path.read_text(), known)
            total += uses
            if found:
                misuses[str(path.relative_to(root))] = found
    assert not misuses, misuses
    assert total > 100  # the scan sees the code's uses (a change in how it is written would hide them)


def test_a_renamed_key_is_found() -> None:
    """The scan finds what it is for: the job's DumpDone and the orchestrator's reading of it, after
    ``seconds`` became ``took`` in the contract."""
    renamed = {**contract_dicts(), "DumpDone": typing.TypedDict("DumpDone", {"table": str, "took": float})}
    job = 'def f(table, seconds):\n    done: DumpDone = {"table": table, "seconds": seconds}\n'
    orchestrator = "def g(event):\n    done: DumpDone = event['x']\n    return done['seconds']\n"
    assert key_uses(job, renamed)[1] == [
        "line 2: DumpDone literal, key 'seconds'",
        "line 2: DumpDone literal lacks 'took'",
    ]
    assert key_uses(orchestrator, renamed)[1] == ["line 3: done['seconds'], not a key of DumpDone"]
