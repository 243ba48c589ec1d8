"""Building: from a resolved config to what a stand runs. Artifact keys (computed once per config),
the environment archive, the code package and its upload, the source commit, and the rendered bundle
of DAG files and SparkApplication manifests with its execution backends."""
