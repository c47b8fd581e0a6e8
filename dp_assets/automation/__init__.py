"""How the pipeline runs unattended: new-data sensors, nightly catch-up schedules, notifications."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from dp_assets.automation.notify import Notifier, build_notification_sensors
from dp_assets.automation.schedules import build_nightly_schedule
from dp_assets.automation.sensors import build_new_data_sensor
from dp_assets.config.loader import LoadedConfig
from dp_assets.config.model import FileSource
from dp_assets.stages.derive import derived_tables


@dataclass(frozen=True)
class AutomationDefs:
    schedules: list[dg.ScheduleDefinition] = field(default_factory=list)
    sensors: list[dg.SensorDefinition] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)


def build_automation(loaded: LoadedConfig, job_name: str) -> AutomationDefs:
    """Per table a nightly schedule, a new-data sensor for tables delivered as files (a database
    source has nothing to watch: the nightly run extracts it), plus run-status notifications. A
    table's runs build the derived tables reading it once what else they read is there; each derived
    table has a nightly schedule of its own for the days whose upstream completed later.

    Sensors and schedules start running on their own in deployed environments; on a laptop (env
    ``local``) they start stopped, so opening the UI never launches runs by surprise.
    """
    running = loaded.env != "local"
    tables = list(loaded.config.tables)
    derived = derived_tables(loaded)
    notifications = build_notification_sensors(loaded)
    return AutomationDefs(
        schedules=[
            build_nightly_schedule(loaded, t, job_name, running, derived)
            for t in [*tables, *(d.name for d in derived)]
        ],
        sensors=[
            build_new_data_sensor(loaded, t, job_name, running, derived)
            for t in tables
            if isinstance(loaded.config.tables[t].source, FileSource)
        ]
        + notifications,
        resources={"notifier": Notifier.for_loaded(loaded)} if notifications else {},
    )
