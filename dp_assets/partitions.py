"""Daily partitions from the config's dates."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from dp_assets.config.model import General


def daily_partitions(general: General) -> dg.DailyPartitionsDefinition:
    end = general.end_date + dt.timedelta(days=1) if general.end_date else None  # Dagster's end is exclusive
    return dg.DailyPartitionsDefinition(
        start_date=general.start_date.isoformat(), end_date=end.isoformat() if end else None
    )
