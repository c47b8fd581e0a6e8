"""The config as a Dagster resource, re-read when a run starts and checked against the definitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from dp_assets.config.loader import ConfigError, LoadedConfig, load_config_from


class ConfigDrift(dg.Failure):
    pass


class PipelineConfigResource(dg.ConfigurableResource):
    """Loads the pipeline config at run start from the source the definitions were built from.

    The asset graph is shaped by the config when definitions load; a run must execute against the
    very same config, so the resource refuses to start when the sha256 it reads differs.
    """

    source: str  # "packaged", a local path, or s3://bucket/key[?versionId=…]
    expected_sha256: str
    dp_home: str

    _loaded: LoadedConfig | None = PrivateAttr(default=None)

    @classmethod
    def for_loaded(cls, loaded: LoadedConfig) -> PipelineConfigResource:
        source = "packaged" if loaded.provenance.source == "packaged" else loaded.provenance.uri
        return cls(source=source, expected_sha256=loaded.provenance.sha256, dp_home=str(loaded.dp_home))

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        try:
            loaded = load_config_from(self.source, home=Path(self.dp_home))
        except ConfigError as e:
            raise dg.Failure(f"could not load the pipeline config at run start: {e}") from e
        if loaded.provenance.sha256 != self.expected_sha256:
            raise ConfigDrift(
                f"the config at {self.source} changed since the definitions were loaded: definitions were "
                f"built from sha256 {self.expected_sha256}, the run would use {loaded.provenance.sha256}. "
                "Reload the code location (or pin CONFIG_S3_URI to a versionId) and launch the run again."
            )
        self._loaded = loaded
        if context.log:
            context.log.info(f"pipeline config: {loaded.provenance.as_dict()}")

    @property
    def loaded(self) -> LoadedConfig:
        if self._loaded is None:
            raise RuntimeError("PipelineConfigResource used before setup_for_execution")
        return self._loaded

    def provenance_metadata(self) -> dict[str, Any]:
        """Config provenance for every materialization's metadata."""
        p = self.loaded.provenance
        return {f"config_{k}": v for k, v in p.as_dict().items() if v is not None}
