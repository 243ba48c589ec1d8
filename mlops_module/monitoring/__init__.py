"""Monitoring, on the Airflow side: the pure retraining decision and its guards, the drift report, and
the decide task's orchestration. The Spark side (drift measures, the built-in job) ships in the runtime."""
