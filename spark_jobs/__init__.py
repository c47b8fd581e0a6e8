"""Spark jobs shipped to wherever Spark runs. They import pyspark, boto3 and dagster_pipes only; the
``dumping`` package (the dump's work on bytes) needs pyarrow and numpy as well."""
