"""The smoke check's Spark job: imports the environment's requirements on the driver and in a Python worker.

Started by ``smoke.py`` as ``spark-submit --archives env.tar.gz#environment --conf
spark.pyspark.python=./environment/bin/python smoke_job.py --python 3.X --modules a,b [--hadoop V]``.
It fails (exit 1, one line per problem) unless both processes run Python 3.X from ./environment and import
every module from the environment's site-packages; with ``--hadoop``, unless the JVM runs that Hadoop version
and resolves ``s3a://`` to S3AFileSystem with the AWS SDK classes the credentials providers need. With
``--hadoop`` alone (no ``--python``) it checks the JVM only: the operator image's build runs it so.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

# The AWS SDK v1 classes S3A's credentials providers load (instance profile, web identity, environment keys).
AWS_CLASSES = ("com.amazonaws.services.s3.AmazonS3Client", "com.amazonaws.auth.WebIdentityTokenCredentialsProvider",
               "com.amazonaws.auth.InstanceProfileCredentialsProvider",
               "com.amazonaws.auth.EnvironmentVariableCredentialsProvider")


def probe(modules: list[str]) -> dict[str, Any]:
    """Where this process's Python and the modules come from."""
    files = {}
    for name in modules:
        files[name] = os.path.realpath(importlib.import_module(name).__file__ or "")
    return {"version": "{}.{}".format(*sys.version_info[:2]), "prefix": os.path.realpath(sys.prefix), "files": files}


def problems(where: str, seen: dict[str, Any], python: str, environment: str) -> list[str]:
    found = []
    if seen["version"] != python:
        found.append(f"{where}: Python {seen['version']}, expected {python}")
    if seen["prefix"] != environment:
        found.append(f"{where}: sys.prefix is {seen['prefix']}, not the unpacked environment {environment}")
    for name, path in seen["files"].items():
        if not path.startswith(environment + os.sep):
            found.append(f"{where}: {name} imported from {path}, outside the environment")
    return found


def jvm_problems(spark: Any, hadoop: str) -> list[str]:
    jvm = spark.sparkContext._jvm
    found = []
    running = jvm.org.apache.hadoop.util.VersionInfo.getVersion()
    if running != hadoop:
        found.append(f"JVM: Hadoop {running}, but the image's hadoop-aws is for {hadoop}")
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    try:
        s3a = jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass("s3a", conf).getName()
        if s3a != "org.apache.hadoop.fs.s3a.S3AFileSystem":
            found.append(f"JVM: s3a:// resolves to {s3a}")
    except Exception as exc:  # py4j's Py4JJavaError carries the JVM's exception: report that
        cause = getattr(exc, "java_exception", None)
        found.append(f"JVM: no FileSystem for s3a:// ({cause.toString() if cause else exc})")
    for name in AWS_CLASSES:
        try:
            jvm.java.lang.Class.forName(name)
        except Exception:
            found.append(f"JVM: class {name} not on the classpath (aws-java-sdk-bundle)")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--python", help="the Python version the environment was built for")
    parser.add_argument("--modules", default="", help="comma-separated modules the requirements provide")
    parser.add_argument("--hadoop", help="check the JVM's Hadoop version and s3a:// support")
    args = parser.parse_args()
    if not (args.python or args.hadoop):
        parser.error("nothing to check: give --python (with --modules), --hadoop, or both")
    modules = [m for m in args.modules.split(",") if m]
    environment = os.path.realpath("environment")

    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("mlops-image-smoke").getOrCreate()
    found, passed = [], []
    try:
        if args.python:
            driver = probe(modules)
            (worker,) = spark.sparkContext.parallelize([0], 1).mapPartitions(lambda _: [probe(modules)]).collect()
            found += problems("driver", driver, args.python, environment)
            found += problems("worker", worker, args.python, environment)
            passed.append(f"Python {args.python} from ./environment imports {', '.join(modules) or 'nothing'} on "
                          "the driver and a worker")
        if args.hadoop:
            found += jvm_problems(spark, args.hadoop)
            passed.append(f"Hadoop {args.hadoop} with s3a:// and the AWS SDK")
    finally:
        spark.stop()
    for line in found:
        print(f"smoke: {line}", file=sys.stderr)
    if not found:
        print(f"smoke: {'; '.join(passed)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
