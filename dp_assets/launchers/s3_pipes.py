"""The EMR launchers' Pipes transport on S3, imported when a job starts: dagster-aws takes 1.4 s to
import (it loads Dagster's test utilities), which every process loading the code location would
otherwise pay, the local launcher's runs included."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.pipes.client import PipesParams
from dagster_aws.pipes import PipesS3ContextInjector, PipesS3MessageReader

from dp_assets.launchers.emr import join_s3

__all__ = ["PipesS3ContextInjector", "PrefixedS3MessageReader"]


class PrefixedS3MessageReader(PipesS3MessageReader):
    """dagster-aws's S3 message reader writes under a random key at the bucket root; keep it under
    our prefix so a lifecycle rule can expire the messages."""

    def __init__(self, *, prefix: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.prefix = prefix.strip("/")

    @contextmanager
    def get_params(self) -> Iterator[PipesParams]:
        with super().get_params() as params:
            yield {**params, "key_prefix": join_s3(self.prefix, params["key_prefix"])}
