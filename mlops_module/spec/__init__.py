"""The spec: what a data scientist writes (model.yaml) and what the platform writes (the stands file),
read with positions, validated against one JSON Schema, merged per stand and resolved into a typed,
frozen :class:`~mlops_module.spec.config.ModelConfig`. Nothing here touches storage, MLflow or Airflow."""
