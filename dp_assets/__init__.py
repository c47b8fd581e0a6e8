"""dp: a Dagster code location that moves data through an S3 data lake: dump -> load -> validate."""

import warnings

import dagster as dg

# Single-run backfills are the point of the design; the beta notice on every asset is noise.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
