"""Spark jobs shipped to wherever Spark runs. They import pyspark and dagster_pipes only."""
