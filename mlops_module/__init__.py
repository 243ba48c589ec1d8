"""mlops_module: one model.yaml in; DAGs, manifests, environments and promotions out."""

__version__ = "0.1.0"
