"""Each launcher knows its target's runtime and pins the interpreter, UTC and ANSI mode on every job;
a release dp cannot run is refused by name before anything starts."""

import sys
import zipfile
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pyspark
import pytest
from moto.backends import get_backend

from dp_assets.config.loader import ConfigError, load_config_from
from dp_assets.config.model import EmrCluster
from dp_assets.launchers.base import SparkLauncher
from dp_assets.launchers.emr import EmrExistingLauncher, EmrLauncher, EmrServerlessLauncher
from dp_assets.launchers.local import LocalSparkLauncher, default_spark_home, input_bytes
from dp_assets.launchers.runtime import (
    UnsupportedRuntime,
    emr_runtime,
    instance_architecture,
    one_architecture,
    pinned_conf,
)
from dp_assets.launchers.select import build_launcher
from dp_assets_tests.conftest import packaged_text
from dp_assets_tests.emr_emulator import ACCOUNT, serverless_application, shared_cluster
from dp_assets_tests.helpers import pipes_results
from dp_assets_tests.runtimes import MissingRuntime, interpreter
from dp_assets_tests.test_launcher_choice import EMR, loaded_with
from spark_jobs.contract import QUICK_JIT, RUN_SCRIPT

PINNED = {
    "spark.pyspark.python": "/usr/bin/python3.11",
    "spark.pyspark.driver.python": "/usr/bin/python3.11",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
}


@pytest.mark.parametrize(
    ("label", "spark", "scala", "ansi_default"),
    [
        ("emr-7.1.0", "3.5", "2.12", False),
        ("emr-7.5.0", "3.5", "2.12", False),
        ("emr-7.13.0", "3.5", "2.12", False),
        ("emr-spark-8.0.0", "4.0", "2.13", True),
    ],
)
def test_supported_releases_run_on_python_3_11(
    label: str, spark: str, scala: str, ansi_default: bool
) -> None:
    runtime = emr_runtime(label)
    assert (runtime.spark, runtime.scala, runtime.python, runtime.ansi_default) == (
        spark,
        scala,
        "/usr/bin/python3.11",
        ansi_default,
    )


@pytest.mark.parametrize(
    ("label", "serverless", "named"),
    [
        ("emr-7.0.0", False, ["emr-7.0.0 ships Python 3.9 only", "emr-7.1.0 or later"]),
        ("emr-6.15.0", False, ["emr-6.15.0 is not a release dp runs on", "emr-spark-8"]),
        ("emr-7.5.0", True, ["EMR Serverless emr-7.5.0", "custom image", '[spark.emr] python = "/usr/bin']),
    ],
)
def test_releases_dp_cannot_run_are_refused_by_name(label: str, serverless: bool, named: list[str]) -> None:
    with pytest.raises(UnsupportedRuntime) as refused:
        emr_runtime(label, serverless=serverless)
    for words in named:
        assert words in str(refused.value)


def test_a_custom_interpreter_overrides_the_release_default() -> None:
    assert emr_runtime("emr-7.5.0", serverless=True, python="/opt/py/bin/python3.12").python == (
        "/opt/py/bin/python3.12"
    )


def test_config_refuses_an_unsupported_transient_release_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DP_SPARK_LAUNCHER", "emr")
    loaded = loaded_with(tmp_path, EMR.replace('release_label = "emr-7.5.0"', 'release_label = "emr-6.15.0"'))
    with pytest.raises(ConfigError) as refused:
        build_launcher(loaded)
    assert "[spark.emr.cluster] release_label: emr-6.15.0 is not a release dp runs on" in str(refused.value)


def test_pinned_settings_cannot_be_overridden_through_spark_conf(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        packaged_text().replace("[spark.conf]\n", '[spark.conf]\n"spark.sql.ansi.enabled" = "false"\n')
    )
    with pytest.raises(ConfigError) as refused:
        load_config_from(str(path))
    assert "spark.sql.ansi.enabled is pinned by dp: set [spark] ansi instead" in str(refused.value)


def step_args(launcher: EmrLauncher | EmrExistingLauncher) -> list[str]:
    step = launcher.step(RUN_SCRIPT, launcher.target_runtime("emr-7.5.0"), {}, {}, "CONTINUE")
    return step["HadoopJarStep"]["Args"]


def confs(args: list[str]) -> dict[str, str]:
    pairs = [args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--conf"]
    return {k: v for k, v in pairs}


def test_every_emr_step_pins_interpreter_time_zone_and_ansi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DP_SPARK_LAUNCHER", "emr")
    transient = build_launcher(loaded_with(tmp_path, EMR))
    assert isinstance(transient, EmrLauncher)
    args = step_args(transient)
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert confs(args).items() >= PINNED.items()
    assert confs(args)["spark.sql.shuffle.partitions"] == "8"  # [spark.conf] still applies
    no_ansi = transient.model_copy(update={"ansi": False})
    assert confs(step_args(no_ansi))["spark.sql.ansi.enabled"] == "false"


def test_local_jobs_get_the_same_pins_and_the_shipped_zip() -> None:
    launcher = LocalSparkLauncher(spark_home=default_spark_home(), python=sys.executable)
    args = launcher.command(RUN_SCRIPT)
    interpreter = dict.fromkeys(("spark.pyspark.python", "spark.pyspark.driver.python"), sys.executable)
    assert confs(args).items() >= {**PINNED, **interpreter}.items()
    assert zipfile.ZipFile(args[args.index("--py-files") + 1]).read("dagster_pipes/__init__.py")
    assert pyspark.__version__.startswith(launcher.runtime().spark + ".")


def dump(table: str, delivered: list[int], extracted: list[int] | None = None) -> dict[str, Any]:
    files = [{"path": f"{table}/{i}.csv", "size": size} for i, size in enumerate(delivered)]
    entries = None if extracted is None else {"2013-01-01": [{"bytes": size} for size in extracted]}
    return {"table": table, "delivered": {"2013-01-01": files}, "extracted": entries}


def test_a_run_known_to_be_small_starts_spark_with_the_quick_compiler_only(tmp_path: Path) -> None:
    launcher = build_launcher(loaded_with(tmp_path, ""))
    assert isinstance(launcher, LocalSparkLauncher)
    assert launcher.quick_jit_below_mb == 32  # the config's default
    mib = 2**20
    flights, planes = dump("flights", [10 * mib, 10 * mib]), dump("planes", [], extracted=[5 * mib])
    demo = {
        "dumps": [flights, planes],
        "loads": [{"table": "flights"}, {"table": "planes"}],
        "derives": [
            {"table": "delays", "upstream": {"flights": {}}},
            {"table": "d2", "upstream": {"delays": {}}},
        ],
    }
    assert input_bytes(demo) == 25 * mib  # delivered files and extracted ones alike
    assert launcher.quick_jit(demo)
    assert launcher.quick_jit({**demo, "dumps": [dump("flights", [27 * mib - 1]), planes]})  # a byte under
    assert not launcher.quick_jit({**demo, "dumps": [dump("flights", [27 * mib]), planes]})  # 32 MiB
    # What the run reads from days dumped before is not in its spec: both compilers, as for a large run.
    reload = {**demo, "dumps": [flights]}  # planes loaded from an earlier dump
    derive_only = {"dumps": [], "loads": [], "derives": demo["derives"][:1]}
    dumped_not_loaded = {**demo, "loads": demo["loads"][1:]}  # the derive reads flights as published before
    for unknown in (reload, derive_only, dumped_not_loaded):
        assert input_bytes(unknown) is None
        assert not launcher.quick_jit(unknown)
    assert not launcher.model_copy(update={"quick_jit_below_mb": 0}).quick_jit(demo)

    def java_options(quick_jit: bool) -> list[str]:
        return confs(launcher.command(RUN_SCRIPT, quick_jit=quick_jit))[
            "spark.driver.extraJavaOptions"
        ].split()

    assert QUICK_JIT in java_options(True)
    assert QUICK_JIT not in java_options(False)
    # A driver option of the config's [spark] conf joins dp's instead of replacing them.
    with_option = launcher.model_copy(update={"conf": {"spark.driver.extraJavaOptions": "-Xss4m"}})
    joined = confs(with_option.command(RUN_SCRIPT, quick_jit=True))["spark.driver.extraJavaOptions"].split()
    assert {QUICK_JIT, "-Xss4m"} <= set(joined)
    assert any(o.startswith("-Dlog4j2.configurationFile=") for o in joined)


def test_local_spark_home_without_spark_is_refused(tmp_path: Path) -> None:
    with pytest.raises(dg.Failure, match="holds no Spark"):
        LocalSparkLauncher(spark_home=str(tmp_path)).runtime()


def test_a_local_interpreter_older_than_3_10_is_refused() -> None:
    python = node_python_or_skip("3.9")
    with pytest.raises(dg.Failure, match=r"is Python 3\.9; dp's jobs need Python 3\.10 or later"):
        LocalSparkLauncher(spark_home=default_spark_home(), python=python).runtime()


def node_python_or_skip(version: str) -> str:
    try:
        return interpreter(version)
    except MissingRuntime as e:
        pytest.skip(str(e))


COMMON: dict[str, Any] = {
    "release_uri": "s3://dp-release/test/demo/releases/r1",
    "messages_uri": "s3://dp-pipes/runs",
    "region_name": "us-east-1",
}


@pytest.mark.parametrize(
    ("make", "refused"),
    [
        (
            lambda: EmrExistingLauncher(**COMMON, cluster_id=shared_cluster(release_label="emr-6.15.0")),
            "emr-6.15.0 is not a release dp runs on",
        ),
        (
            lambda: EmrServerlessLauncher(
                **COMMON,
                application_id=serverless_application("emr-7.5.0"),
                execution_role_arn=f"arn:aws:iam::{ACCOUNT}:role/dp-job",
            ),
            "EMR Serverless emr-7.5.0: AWS documents only Python 3.9",
        ),
    ],
    ids=["existing cluster on emr-6", "serverless on emr-7 without an interpreter"],
)
def test_existing_targets_are_checked_before_anything_is_submitted(aws: str, make, refused: str) -> None:
    launcher = make()

    @dg.asset
    def table(context: dg.AssetExecutionContext, spark: SparkLauncher):  # type: ignore[no-untyped-def]
        yield from pipes_results(spark.run_job(context, RUN_SCRIPT, {}))

    for bucket in ("dp-pipes", "dp-release"):
        boto3.client("s3").create_bucket(Bucket=bucket)
    result = dg.materialize([table], resources={"spark": launcher}, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert refused in failure.step_failure_data.user_failure_data.description
    if isinstance(launcher, EmrExistingLauncher):
        assert boto3.client("emr").list_steps(ClusterId=launcher.cluster_id)["Steps"] == []
    else:
        assert not get_backend("emr-serverless")[ACCOUNT]["us-east-1"].job_runs.get(launcher.application_id)


def test_pinned_conf_names_the_runtime_interpreter() -> None:
    assert pinned_conf(emr_runtime("emr-spark-8.0.0"), ansi=False) == {
        **PINNED,
        "spark.sql.ansi.enabled": "false",
    }


@pytest.mark.parametrize(
    ("instance_type", "architecture"),
    [
        ("m7g.xlarge", "aarch64"),
        ("r6gd.2xlarge", "aarch64"),
        ("c6gn.large", "aarch64"),
        ("im4gn.large", "aarch64"),
        ("x2gd.medium", "aarch64"),
        ("m5.xlarge", "x86_64"),
        ("m6i.xlarge", "x86_64"),
        ("m7a.large", "x86_64"),
        ("g5.xlarge", "x86_64"),  # a GPU family, not Graviton
        ("g4dn.xlarge", "x86_64"),
        ("m7i-flex.large", "x86_64"),
        ("a1.large", "aarch64"),  # the first Graviton
    ],
)
def test_graviton_instance_types_are_aarch64(instance_type: str, architecture: str) -> None:
    assert instance_architecture(instance_type) == architecture


def test_nodes_of_two_architectures_are_refused_by_name() -> None:
    assert one_architecture("cluster j-1", ["m7g.xlarge", "r7g.large"]) == "aarch64"
    with pytest.raises(UnsupportedRuntime, match=r"m5\.xlarge \(x86_64\), m7g\.xlarge \(aarch64\)"):
        one_architecture("cluster j-1", ["m7g.xlarge", "m5.xlarge"])
    with pytest.raises(UnsupportedRuntime, match=r"'db\.r5\.large' is not one dp can read"):
        instance_architecture("db.r5.large")


GRAVITON = {
    "transient": lambda: EmrLauncher(
        **COMMON,
        **EmrCluster(master_instance_type="m5.xlarge", core_instance_type="m7g.xlarge").model_dump(),
    ),
    "existing": lambda: EmrExistingLauncher(
        **COMMON, cluster_id=shared_cluster(workers={"CORE": "r7g.xlarge", "TASK": "c7g.xlarge"})
    ),
    "serverless": lambda: EmrServerlessLauncher(
        **COMMON,
        application_id=serverless_application(architecture="ARM64"),
        execution_role_arn=f"arn:aws:iam::{ACCOUNT}:role/dp-job",
        python="/usr/bin/python3.11",  # a custom image's: 7.x images have Python 3.9 only
    ),
}


@pytest.fixture
def job_envs(aws: str) -> None:
    """The release holds a job environment per architecture, as `dp deploy` writes it."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="dp-release")
    for architecture in ("x86_64", "aarch64"):
        s3.put_object(
            Bucket="dp-release", Key=f"test/demo/releases/r1/job_env-{architecture}.zip", Body=b"zip"
        )


@pytest.mark.parametrize("kind", list(GRAVITON))
def test_graviton_targets_get_the_aarch64_job_environment(job_envs: None, kind: str) -> None:
    """The job environment holds compiled packages: a run that dumps on Graviton nodes (transient
    cluster: the core nodes, where the containers run; an existing cluster's live core and task
    nodes; a Serverless application's ARM64) ships the release's aarch64 archive."""
    launcher = GRAVITON[kind]()
    archive = launcher.job_env_conf()[launcher.archives_conf]
    assert archive == f"{COMMON['release_uri']}/job_env-aarch64.zip#dp_env"


def test_an_existing_cluster_mixing_architectures_is_refused_only_for_a_run_that_dumps(
    job_envs: None,
) -> None:
    """A dump ships compiled packages for one CPU, so a cluster whose workers mix x86_64 and
    Graviton cannot run it; loads and derived tables ship none, and run there as before."""
    cluster_id = shared_cluster(workers={"CORE": "m5.xlarge", "TASK": "m7g.xlarge"})
    mixed = EmrExistingLauncher(**COMMON, cluster_id=cluster_id)
    with pytest.raises(dg.Failure, match=f"cluster {cluster_id} runs containers on x86_64 and aarch64"):
        mixed.job_env_conf()
    assert mixed.runtime().label == "emr-7.5.0"
    x86 = EmrExistingLauncher(**COMMON, cluster_id=shared_cluster())  # the master alone
    assert x86.job_env_conf()[x86.archives_conf].endswith("/job_env-x86_64.zip#dp_env")


def test_a_release_without_the_nodes_job_environment_fails_before_submitting(aws: str) -> None:
    """A release deployed before dp shipped one job environment per architecture lacks the archive:
    the run says so and what to do, instead of YARN failing to fetch it minutes into the step."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="dp-release")
    old = "s3://dp-release/test/demo/releases/r0"
    s3.put_object(Bucket="dp-release", Key="test/demo/releases/r0/job_env.zip", Body=b"zip")  # x86_64 only
    launcher = GRAVITON["transient"]().model_copy(update={"release_uri": old})
    with pytest.raises(dg.Failure, match=r"has no job_env-aarch64\.zip \(404\).*run `dp deploy`"):
        launcher.job_env_conf()
