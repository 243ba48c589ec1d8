"""The cluster side of a Kubernetes stand: what the platform team creates once per stand."""
