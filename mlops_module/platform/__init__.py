"""The platform team's side of a stand: the cluster objects it creates once per stand (objects, rbac), and the
preflight that checks a stand has what it needs (doctor)."""
