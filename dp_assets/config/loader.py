"""Find, fetch and validate the pipeline config, recording where it came from.

Precedence: an explicit URI (``--config-s3``) > ``CONFIG_S3_URI`` (environment, then ``.env``) > the
``config.toml`` packaged next to this module. Every pitfall raises :class:`ConfigError` naming the
key, file or URI and what to do about it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from dotenv import dotenv_values
from pydantic import ValidationError

from dp_assets.config.model import ENVS, PipelineConfig

log = logging.getLogger("dp.config")

PACKAGED = "packaged"
_RELEASE = re.compile(r"/releases/(?P<deployment_id>[^/]+)/[^/]+$")


class ConfigError(Exception):
    """The config could not be found, read or validated; the message says where and why."""


@dataclass(frozen=True)
class Provenance:
    source: Literal["s3", "file", "packaged"]
    uri: str
    sha256: str
    etag: str | None = None
    version_id: str | None = None
    deployment_id: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config, its provenance, and the folder relative local paths resolve against."""

    config: PipelineConfig
    provenance: Provenance
    dp_home: Path
    # The derived tables' SQL read from `general.transforms_path` next to the config: file -> text.
    sql_files: dict[str, str] = field(default_factory=dict)

    @property
    def table_names(self) -> list[str]:
        """Every table the config defines: the configured ones, then one derived table per SQL file."""
        return [*self.config.tables, *(PurePosixPath(f).stem for f in self.sql_files)]

    def resolve(self, path: str) -> str:
        """Absolute path or URI for a path from the config."""
        if "://" in path:
            return path.rstrip("/")
        p = Path(path).expanduser()
        return str(p if p.is_absolute() else (self.dp_home / p).resolve())

    def secondary_environment(self) -> LoadedConfig | None:
        """The config as the secondary environment's tables are published with it (see
        ``PipelineConfig.secondary_environment``); None without [secondary]."""
        config = self.config.secondary_environment()
        if config is None:
            return None
        second = replace(self, config=config)
        ours, theirs = self.output_path.rstrip("/") + "/", second.output_path.rstrip("/") + "/"
        if ours.startswith(theirs) or theirs.startswith(ours):
            raise ConfigError(
                f"secondary.output_path {config.general.output_path!r} is {second.output_path}, which "
                f"{'is' if ours == theirs else 'overlaps'} the primary lake {self.output_path} "
                f"(general.output_path) in {self.provenance.uri}: give the secondary a lake of its own"
            )
        return second

    @property
    def input_path(self) -> str:
        return self.resolve(self.config.general.input_path)

    @property
    def output_path(self) -> str:
        return self.resolve(self.config.general.output_path)

    @property
    def e2e_input_path(self) -> str:
        return self.resolve(self.config.general.e2e_input_path)

    @property
    def env(self) -> str:
        """The environment this process runs in: DP_ENV, else the config's general.env."""
        return env_override() or self.config.general.env

    def resolved_dict(self) -> dict[str, Any]:
        """The config as JSON-able data with `general` paths made absolute."""
        data = self.config.model_dump(mode="json")
        data["general"]["input_path"] = self.input_path
        data["general"]["output_path"] = self.output_path
        data["general"]["e2e_input_path"] = self.e2e_input_path
        data["general"]["env"] = self.env
        return data


def dp_home() -> Path:
    """Where the local lake and Dagster instance live: ``$DP_HOME``, else ``./.dp``."""
    return Path(os.environ.get("DP_HOME") or Path.cwd() / ".dp").expanduser().resolve()


def env_override() -> str | None:
    """DP_ENV, validated; None when unset."""
    env = os.environ.get("DP_ENV")
    if env and env not in ENVS:
        raise ConfigError(f"DP_ENV={env!r} is not an environment; use one of {', '.join(ENVS)}")
    return env or None


def config_source(explicit: str | None = None, dotenv_file: Path | None = None) -> str:
    """The URI to load: explicit > CONFIG_S3_URI (env, then .env) > packaged."""
    if explicit:
        return explicit
    if uri := os.environ.get("CONFIG_S3_URI"):
        return uri
    env_file = dotenv_file or Path.cwd() / ".env"
    if env_file.is_file() and (uri := dotenv_values(env_file).get("CONFIG_S3_URI")):
        return uri
    return PACKAGED


def load_config(explicit: str | None = None) -> LoadedConfig:
    """Load the config by precedence; warn when falling back to the packaged one."""
    source = config_source(explicit)
    if source == PACKAGED:
        log.warning(
            "CONFIG_S3_URI is not set (environment or .env): using the config.toml packaged in dp_assets"
        )
    return load_config_from(source)


def load_config_from(uri: str, home: Path | None = None) -> LoadedConfig:
    """Load from ``packaged``, a local path, or an ``s3://bucket/key[?versionId=…]`` URI.

    Relative local paths in the config resolve against ``home`` (default: :func:`dp_home`).
    """
    if uri == PACKAGED:
        ref = resources.files("dp_assets.config") / "config.toml"
        body = ref.read_bytes()
        prov = Provenance(source="packaged", uri=str(ref), sha256=_sha256(body))
    elif uri.startswith("s3://") or "://" in uri:
        body, prov = _read_s3(uri)
    else:
        path = Path(uri).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"config file {path} does not exist; give an existing TOML file or an s3:// URI"
            )
        body = path.read_bytes()
        prov = Provenance(source="file", uri=str(path.resolve()), sha256=_sha256(body))
    config = parse_config(body, prov.uri)
    if prov.source == "s3":
        log.info("loaded config from S3: %s", prov.as_dict())
    sql_files = read_sql_files(prov, config.general.transforms_path)
    return LoadedConfig(config=config, provenance=prov, dp_home=home or dp_home(), sql_files=sql_files)


def read_sql_files(prov: Provenance, transforms_path: str) -> dict[str, str]:
    """Every `*.sql` in the transforms folder beside the config (packaged, local or S3): path -> text."""
    from spark_jobs.storage import store_for

    if prov.source == "s3":
        bucket, key, _ = parse_s3_uri(prov.uri)
        folder = f"s3://{bucket}/{key.rsplit('/', 1)[0] + '/' if '/' in key else ''}{transforms_path}"
    else:
        folder = str(Path(prov.uri).parent / transforms_path)
    store = store_for(folder)
    files = {}
    try:
        for f in store.list(""):
            if f.path.endswith(".sql") and "/" not in f.path:
                with store.open_read(f.path) as stream:
                    files[store.uri(f.path)] = stream.read().decode("utf-8")
    except FileNotFoundError:
        return {}
    return dict(sorted(files.items()))


def parse_config(body: bytes, where: str) -> PipelineConfig:
    """Parse and validate TOML; errors name the file/URI, the key, and line/column for syntax."""
    try:
        data = tomllib.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}: not UTF-8 text (byte {e.start}); save the config as UTF-8") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: invalid TOML: {e}") from e
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{where}: {e.error_count()} error(s) in config\n" + _describe(e)) from e


def _describe(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key; remove it or check its spelling")
        elif err["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            got = err.get("input")
            secret = key.endswith("_env")  # may hold a pasted webhook URL: never echo it
            shown = f" (got {got!r})" if not isinstance(got, dict | list) and not secret else ""
            lines.append(f"  {key}: {err['msg']}{shown}")
    return "\n".join(lines)


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def parse_s3_uri(uri: str) -> tuple[str, str, str | None]:
    """(bucket, key, version_id) of ``s3://bucket/key[?versionId=…]``, with named pitfalls."""
    if uri.lower().startswith("s3://s3://") or "s3://" in uri[5:]:
        raise ConfigError(f"{uri}: the s3:// prefix is given twice; use s3://bucket/key")
    parts = urlsplit(uri)
    if parts.scheme != "s3":
        raise ConfigError(f"{uri}: only s3:// URIs are supported for remote configs (got {parts.scheme}://)")
    key = parts.path.lstrip("/")
    if not parts.netloc or not key:
        raise ConfigError(f"{uri}: needs both a bucket and a key, as in s3://bucket/path/config.toml")
    versions = parse_qs(parts.query).get("versionId")
    return parts.netloc, key, versions[0] if versions else None


def _read_s3(uri: str) -> tuple[bytes, Provenance]:
    import boto3
    from botocore.exceptions import ClientError, NoCredentialsError

    bucket, key, version_id = parse_s3_uri(uri)
    kwargs: dict[str, str] = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        obj = boto3.client("s3").get_object(**kwargs)
        body = obj["Body"].read()
    except NoCredentialsError as e:
        raise ConfigError(f"{uri}: no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID") from e
    except ClientError as e:
        raise ConfigError(_explain_s3_error(uri, bucket, key, version_id, e)) from e
    m = _RELEASE.search(key)
    prov = Provenance(
        source="s3",
        uri=uri,
        sha256=_sha256(body),
        etag=obj.get("ETag", "").strip('"') or None,
        version_id=obj.get("VersionId") if obj.get("VersionId") not in (None, "null") else None,
        deployment_id=m["deployment_id"] if m else None,
    )
    return body, prov


def _explain_s3_error(uri: str, bucket: str, key: str, version_id: str | None, e: Exception) -> str:
    code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
    if code in ("AccessDenied", "403", "Forbidden"):
        actions = "s3:GetObject and s3:GetObjectVersion" if version_id else "s3:GetObject"
        return f"{uri}: access denied; the caller needs {actions} on arn:aws:s3:::{bucket}/{key}" + (
            " (pinned versions need s3:GetObjectVersion)" if version_id else ""
        )
    if code == "NoSuchBucket":
        return f"{uri}: bucket {bucket!r} does not exist (check the name and the AWS account/region)"
    if code in ("NoSuchKey", "404", "NotFound"):
        return (
            f"{uri}: no object at key {key!r} in bucket {bucket!r}; check the path or deploy a release first"
        )
    if code in ("NoSuchVersion", "InvalidArgument") and version_id:
        return f"{uri}: version {version_id!r} of s3://{bucket}/{key} does not exist"
    return f"{uri}: could not read the config from S3 ({code or type(e).__name__}: {e})"
