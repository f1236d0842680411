"""Spark MLlib computes with the native BLAS and LAPACK that `make setup` installs."""

from __future__ import annotations

from pyspark.sql import SparkSession


def test_spark_mllib_loads_the_native_blas_and_lapack(spark: SparkSession) -> None:
    # scripts/system_packages.sh installs libopenblas0-serial; without it netlib falls back to
    # Java (ALS 2.2x slower here) with only a warning in the log.
    netlib = spark.sparkContext._jvm.dev.ludovic.netlib  # type: ignore[union-attr]
    assert netlib.blas.NativeBLAS.getInstance().getClass().getSimpleName() == "JNIBLAS"
    assert netlib.lapack.LAPACK.getInstance().getClass().getSimpleName() == "JNILAPACK"
