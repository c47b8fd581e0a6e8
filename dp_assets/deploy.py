"""`dp deploy`: publish a release — the config, its SQL and the Spark jobs — to a versioned bucket.

Layout under ``s3://<bucket>/<env>/<pipeline>/``:

- ``releases/<deployment_id>/config.toml``, ``transforms/*.sql``, ``spark_jobs/*`` (the entry
  scripts spark-submit runs), ``spark_jobs.zip`` (the same modules for ``--py-files``) and
  ``manifest.json`` (sha256 and size of every file, git commit, time, note);
- ``config.toml`` and ``transforms/``: the stable alias, updated to the newest release.

A release is immutable once written and is what a run pins: the printed ``CONFIG_S3_URI`` names the
release's config by VersionId, and the SQL and jobs beside it are read from the same folder. Buckets
without versioning are refused, since a pinned config needs VersionIds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dp_assets.config.loader import ConfigError, LoadedConfig
from dp_assets.launchers import job_env
from dp_assets.launchers.base import SHIPPED_SUFFIXES, spark_jobs_dir, spark_jobs_zip


@dataclass(frozen=True)
class ReleaseFile:
    key: str  # relative to the release folder
    body: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass
class Plan:
    bucket: str
    root: str  # <env>/<pipeline>
    deployment_id: str
    transforms_path: str = "transforms"
    files: list[ReleaseFile] = field(default_factory=list)
    manifest: dict[str, object] = field(default_factory=dict)

    @property
    def release(self) -> str:
        return f"{self.root}/releases/{self.deployment_id}"

    def render(self) -> str:
        lines = [f"release s3://{self.bucket}/{self.release}/"]
        lines += [f"  {f.key:<40} {len(f.body):>9} bytes  sha256 {f.sha256[:16]}…" for f in self.files]
        lines += [
            "  manifest.json",
            f"alias   s3://{self.bucket}/{self.root}/config.toml and transforms/ -> this release",
        ]
        return "\n".join(lines)


def git_commit(repo: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def plan_release(
    loaded: LoadedConfig,
    config_body: bytes,
    env: str,
    bucket: str,
    deployment_id: str | None = None,
    note: str = "",
    now: dt.datetime | None = None,
) -> Plan:
    now = now or dt.datetime.now(dt.UTC)
    repo = Path(__file__).resolve().parents[1]
    commit = git_commit(repo)
    deployment_id = deployment_id or f"{now:%Y%m%dT%H%M%SZ}" + (f"-{commit[:8]}" if commit else "")
    if "/" in deployment_id or not deployment_id.strip():
        raise ConfigError(f"deployment id {deployment_id!r} must be one path segment (no '/')")
    folder = loaded.config.general.transforms_path
    plan = Plan(
        bucket=bucket,
        root=f"{env}/{loaded.config.general.pipeline_name}",
        deployment_id=deployment_id,
        transforms_path=folder,
    )
    plan.files.append(ReleaseFile("config.toml", config_body))
    for uri, text in loaded.sql_files.items():
        plan.files.append(ReleaseFile(f"{folder}/{PurePosixPath(uri).name}", text.encode()))
    jobs = spark_jobs_dir()
    for path in sorted(jobs.iterdir()):
        if path.suffix in SHIPPED_SUFFIXES and path.name != "__init__.py":
            plan.files.append(ReleaseFile(f"spark_jobs/{path.name}", path.read_bytes()))
    plan.files.append(ReleaseFile("spark_jobs.zip", spark_jobs_zip()))
    for architecture in job_env.PLATFORMS:  # pyarrow, numpy for the dump, on x86_64 and Graviton nodes
        plan.files.append(ReleaseFile(job_env.archive_name(architecture), job_env.archive(architecture)))
    plan.manifest = {
        "deployment_id": deployment_id,
        "env": env,
        "pipeline": loaded.config.general.pipeline_name,
        "git_commit": commit,
        "created_at": now.isoformat(timespec="seconds"),
        "note": note,
        "config_source": loaded.provenance.uri,
        "files": {f.key: {"sha256": f.sha256, "bytes": len(f.body)} for f in plan.files},
    }
    return plan


def require_versioning(s3: object, bucket: str) -> None:
    status = s3.get_bucket_versioning(Bucket=bucket).get("Status")  # type: ignore[attr-defined]
    if status != "Enabled":
        raise ConfigError(
            f"bucket {bucket} has versioning {status or 'never enabled'}: a release must be pinnable by "
            f"VersionId. Enable it first: aws s3api put-bucket-versioning --bucket {bucket} "
            "--versioning-configuration Status=Enabled"
        )


def publish(plan: Plan, s3: object) -> str:
    """Upload the release, then point the alias at it; returns the pinned CONFIG_S3_URI."""
    put = s3.put_object  # type: ignore[attr-defined]
    existing = s3.list_objects_v2(Bucket=plan.bucket, Prefix=f"{plan.release}/", MaxKeys=1)  # type: ignore[attr-defined]
    if existing.get("KeyCount"):
        raise ConfigError(
            f"s3://{plan.bucket}/{plan.release}/ already exists: releases are immutable; "
            "choose another --deployment-id"
        )
    version = None
    for f in plan.files:
        response = put(Bucket=plan.bucket, Key=f"{plan.release}/{f.key}", Body=f.body)
        if f.key == "config.toml":
            version = response.get("VersionId")
    put(
        Bucket=plan.bucket,
        Key=f"{plan.release}/manifest.json",
        Body=json.dumps(plan.manifest, indent=2).encode(),
        ContentType="application/json",
    )
    # The alias last: a reader of the alias never sees a release that is not complete.
    alias_sql = {f.key for f in plan.files if f.key.endswith(".sql")}
    for f in plan.files:
        if f.key == "config.toml" or f.key in alias_sql:
            put(Bucket=plan.bucket, Key=f"{plan.root}/{f.key}", Body=f.body)
    listed = s3.list_objects_v2(Bucket=plan.bucket, Prefix=f"{plan.root}/{plan.transforms_path}/")  # type: ignore[attr-defined]
    stale = listed.get("Contents", [])  # absent when empty
    for obj in stale:
        if obj["Key"][len(plan.root) + 1 :] not in alias_sql:
            s3.delete_object(Bucket=plan.bucket, Key=obj["Key"])  # type: ignore[attr-defined]
    return f"s3://{plan.bucket}/{plan.release}/config.toml" + (f"?versionId={version}" if version else "")
