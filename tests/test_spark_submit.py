"""The local stand's translation of a SparkApplication into spark-submit."""

from __future__ import annotations

from mlops_module.local.spark_submit import local_path, spark_submit_argv


def test_argv_carries_the_same_spec() -> None:
    app = {
        "metadata": {"name": "m-local-train"},
        "spec": {
            "mainApplicationFile": "file:///s/code/src/train.py",
            "arguments": ["--job", "train", "--", "--x", 1],
            "deps": {"archives": ["file:///s/envs/k.tar.gz#environment"], "pyFiles": ["file:///s/code/code.zip"],
                     "packages": ["org.apache.hadoop:hadoop-aws:3.3.4"]},
            "sparkConf": {"spark.pyspark.python": "./environment/bin/python", "spark.a": "1"},
            "hadoopConf": {"fs.s3a.endpoint": "http://127.0.0.1:9000"},
            "driver": {"cores": 1, "memory": "1g", "serviceAccount": "ignored"},
            "executor": {"instances": 2, "cores": 2, "memory": "2g"},
        },
    }
    argv = spark_submit_argv(app, "spark-submit")
    assert argv == [
        "spark-submit", "--master", "local[*]", "--deploy-mode", "client", "--name", "m-local-train",
        "--driver-memory", "1g",
        "--archives", "/s/envs/k.tar.gz#environment", "--py-files", "/s/code/code.zip",
        "--packages", "org.apache.hadoop:hadoop-aws:3.3.4",
        "--conf", "spark.a=1", "--conf", "spark.driver.cores=1", "--conf", "spark.executor.memory=2g",
        "--conf", "spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:9000",
        "--conf", "spark.pyspark.python=./environment/bin/python",
        "/s/code/src/train.py", "--job", "train", "--", "--x", "1",
    ]


def test_archives_already_unpacked_are_not_handed_to_spark() -> None:
    app = {"metadata": {"name": "m"}, "spec": {"mainApplicationFile": "file:///s/main.py",
                                               "deps": {"archives": ["file:///s/a.tar.gz#environment",
                                                                     "file:///s/b.tar.gz#other"]}}}
    argv = spark_submit_argv(app, "spark-submit", unpacked=["file:///s/a.tar.gz#environment"])
    assert argv[argv.index("--archives") + 1] == "/s/b.tar.gz#other"


def test_local_paths() -> None:
    assert local_path("local:///opt/spark/x.py") == "/opt/spark/x.py"
    assert local_path("file:///tmp/x.py") == "/tmp/x.py"
    assert local_path("s3a://b/x.py") == "s3a://b/x.py"
