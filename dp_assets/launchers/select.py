"""The one place that picks where Spark runs: config ``[spark] launcher``, or ``DP_SPARK_LAUNCHER``.

Stages only ever see a ``SparkLauncher``; everything launcher-specific is decided here, at
definitions load, so a wrong choice or a missing setting stops the code location with the key named.
"""

from __future__ import annotations

import os

from dp_assets.config.loader import ConfigError, LoadedConfig
from dp_assets.config.model import LAUNCHERS, Emr, check_launcher_settings
from dp_assets.launchers.base import SparkLauncher
from dp_assets.launchers.emr import (
    EmrExistingLauncher,
    EmrLauncher,
    EmrServerlessLauncher,
    PollConfig,
)
from dp_assets.launchers.local import LocalSparkLauncher
from dp_assets.launchers.runtime import UnsupportedRuntime, emr_runtime

LAUNCHER_ENV = "DP_SPARK_LAUNCHER"


def launcher_choice(loaded: LoadedConfig, requested: str | None = None) -> str:
    """`requested` (a CLI flag), else DP_SPARK_LAUNCHER, else the config's; its settings checked."""
    override = os.environ.get(LAUNCHER_ENV, "").strip()
    if requested:
        choice, where = requested, f"launcher {requested}"
    elif override:
        if override not in LAUNCHERS:
            raise ConfigError(
                f"{LAUNCHER_ENV}={override!r} is not a launcher; use one of {', '.join(LAUNCHERS)}"
            )
        choice, where = override, f"{LAUNCHER_ENV}={override}"
    else:
        choice, where = loaded.config.spark.launcher, "[spark] launcher"
    try:
        check_launcher_settings(loaded.config.spark, choice)
    except ValueError as e:
        raise ConfigError(f"{loaded.provenance.uri}: {where}: {e}") from e
    return choice


def release_uri(loaded: LoadedConfig, emr: Emr) -> str:
    """The release folder whose spark_jobs/ the cluster runs: configured, or the config's own."""
    if emr.release_uri:
        return emr.release_uri.rstrip("/")
    prov = loaded.provenance
    if prov.source == "s3" and prov.deployment_id:
        return prov.uri.split("?", 1)[0].rsplit("/", 1)[0]
    raise ConfigError(
        f"{prov.uri}: the EMR launchers run the Spark jobs of a release, and this config was not loaded "
        "from one. Run `dp deploy --env <env>` and set CONFIG_S3_URI to the URI it prints, or set "
        "[spark.emr] release_uri."
    )


def build_launcher(loaded: LoadedConfig) -> SparkLauncher:
    config = loaded.config
    choice = launcher_choice(loaded)
    if choice == "local":
        return LocalSparkLauncher(
            master=config.spark.master,
            quick_jit_below_mb=config.spark.quick_jit_below_mb,
            conf=config.spark.conf,
            ansi=config.spark.ansi,
            catalog_dir=str(loaded.dp_home / "catalog") if config.catalog_database else None,
        )
    emr = config.spark.emr
    assert emr is not None  # launcher_choice checked it
    common = {
        "release_uri": release_uri(loaded, emr),
        "messages_uri": emr.messages_uri,
        "log_uri": emr.log_uri,
        "spark_conf": config.spark.conf,
        "ansi": config.spark.ansi,
        "python": emr.python,
        "region_name": emr.region,
        "poll": PollConfig(
            interval_seconds=emr.poll_interval_seconds,
            max_wait_seconds=emr.max_wait_seconds,
            log_wait_seconds=emr.log_wait_seconds,
        ),
    }
    if choice == "emr-existing":
        return EmrExistingLauncher(**common, cluster_id=emr.cluster_id)
    if choice == "emr-serverless":
        return EmrServerlessLauncher(
            **common, application_id=emr.application_id, execution_role_arn=emr.execution_role_arn
        )
    try:  # the transient cluster's release is known now; the others' when a job starts
        emr_runtime(emr.cluster.release_label, python=emr.python)
    except UnsupportedRuntime as e:
        raise ConfigError(f"{loaded.provenance.uri}: [spark.emr.cluster] release_label: {e}") from e
    return EmrLauncher(**common, **emr.cluster.model_dump())
