"""The dump's data plane: what touches delivered bytes (parse into staged Parquet, scan for sensitive
data). Free of Dagster and of the config's models, so it runs on a Spark application's executors;
it needs pyarrow and numpy besides the standard library (``dp_assets.launchers.job_env``)."""
