"""Choosing where Spark runs: `[spark] launcher` or DP_SPARK_LAUNCHER, each wrong choice named."""

from __future__ import annotations

from pathlib import Path

import pytest

from dp_assets.config.loader import ConfigError, load_config_from
from dp_assets.launchers.emr import EmrExistingLauncher, EmrLauncher
from dp_assets.launchers.local import LocalSparkLauncher
from dp_assets.launchers.select import build_launcher
from dp_assets_tests.conftest import packaged_text

GLUE = "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"
EMR = f"""
[spark.emr]
release_uri = "s3://dp-releases/prod/nycflights13/releases/r7/"
messages_uri = "s3://dp-pipes/runs"
log_uri = "s3://dp-logs/emr/"
poll_interval_seconds = 10
max_wait_seconds = 86400
cluster_id = "j-2AXXXXXXGAPLF"

[spark.emr.cluster]
release_label = "emr-7.5.0"
core_instance_count = 4
bootstrap_actions = [{{ name = "deps", path = "s3://dp-releases/bootstrap.sh", args = ["--quiet"] }}]

[[spark.emr.cluster.configurations]]
Classification = "spark-hive-site"
Properties = {{ "hive.metastore.client.factory.class" = "{GLUE}" }}
"""


def loaded_with(tmp_path: Path, extra: str, launcher: str = "local"):
    text = packaged_text().replace('launcher = "local"', f'launcher = "{launcher}"') + extra
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config_from(str(path))


def test_local_is_the_default(tmp_path: Path) -> None:
    assert isinstance(build_launcher(loaded_with(tmp_path, "")), LocalSparkLauncher)


def test_env_var_overrides_config_and_settings_reach_the_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = loaded_with(tmp_path, EMR)
    monkeypatch.setenv("DP_SPARK_LAUNCHER", "emr")
    transient = build_launcher(loaded)
    assert isinstance(transient, EmrLauncher)
    assert transient.release_uri == "s3://dp-releases/prod/nycflights13/releases/r7"
    assert transient.core_instance_count == 4 and transient.poll.max_wait_seconds == 86400
    assert transient.bootstrap_actions[0]["path"] == "s3://dp-releases/bootstrap.sh"
    assert transient.configurations[0]["Classification"] == "spark-hive-site"
    assert transient.spark_conf["spark.sql.shuffle.partitions"] == "8"  # [spark.conf] applies everywhere
    monkeypatch.setenv("DP_SPARK_LAUNCHER", "emr-existing")
    existing = build_launcher(loaded)
    assert isinstance(existing, EmrExistingLauncher) and existing.cluster_id == "j-2AXXXXXXGAPLF"


def test_unknown_launcher_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DP_SPARK_LAUNCHER", "emr_serverless")
    with pytest.raises(ConfigError, match="DP_SPARK_LAUNCHER='emr_serverless' is not a launcher; use one of"):
        build_launcher(loaded_with(tmp_path, EMR))


def test_missing_settings_are_named_for_the_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"needs a \[spark.emr\] section"):
        loaded_with(tmp_path, "", launcher="emr")
    monkeypatch.setenv("DP_SPARK_LAUNCHER", "emr-serverless")
    with pytest.raises(
        ConfigError,
        match=r"DP_SPARK_LAUNCHER=emr-serverless: .*needs \[spark.emr\] application_id and execution_role",
    ):
        build_launcher(loaded_with(tmp_path, EMR))


def test_emr_needs_a_release(tmp_path: Path) -> None:
    """A config not loaded from a release has no bundle for the cluster to run: say how to get one."""
    without_release = EMR.replace('release_uri = "s3://dp-releases/prod/nycflights13/releases/r7/"', "")
    loaded = loaded_with(tmp_path, without_release, launcher="emr")
    with pytest.raises(ConfigError, match=r"was not loaded from one\. Run `dp deploy --env <env>`"):
        build_launcher(loaded)


def test_bad_uris_and_role_arns_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"spark.emr.messages_uri.*'dp-pipes/runs' is not an s3://"):
        loaded_with(tmp_path, EMR.replace('"s3://dp-pipes/runs"', '"dp-pipes/runs"'))
    with pytest.raises(ConfigError, match=r"execution_role_arn.*is not an IAM role ARN"):
        loaded_with(
            tmp_path, EMR.replace("[spark.emr.cluster]", 'execution_role_arn = "dp-job"\n[spark.emr.cluster]')
        )
