"""Where a table's days live: the dump's zones in the lake and the deliveries in the landing zone.
Standard library only: the orchestrator's ``Lake`` asks the same object."""

from __future__ import annotations

from dataclasses import dataclass

RAW_ZONE = "_raw"  # leading underscore: Spark and Hive readers skip it under output_path
STAGED_ZONE = "_staged"
ISOLATED_ZONE = "_isolated"  # deliveries held back by the sensitive-data scan, for review
MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class TableLayout:
    """Where a table's days live: its deliveries under the landing root, its dump's zones under the
    lake's root (paths relative to each)."""

    name: str
    partition_column: str
    source_prefix: str  # under input_path, where upstream drops <YYYY-MM-DD>/ folders

    def delivery_prefix(self, day: str) -> str:
        return f"{self.source_prefix.strip('/')}/{day}"

    def raw_root(self) -> str:
        return f"{RAW_ZONE}/{self.name}"

    def staged_root(self) -> str:
        return f"{STAGED_ZONE}/{self.name}"

    def raw_prefix(self, day: str) -> str:
        return f"{self.raw_root()}/{self.partition_column}={day}"

    def staged_prefix(self, day: str) -> str:
        return f"{self.staged_root()}/{self.partition_column}={day}"

    def isolated_prefix(self, day: str) -> str:
        """Where a day's raw and staged files go when the scan isolates the delivery."""
        return f"{ISOLATED_ZONE}/{self.name}/{self.partition_column}={day}"

    def manifest_path(self, day: str) -> str:
        return f"{self.raw_prefix(day)}/{MANIFEST}"

    def delivery_index(self, sha256: str) -> str:
        """Marker naming the partition a file with this content was first delivered for."""
        return f"{self.raw_root()}/_index/{sha256}.json"
