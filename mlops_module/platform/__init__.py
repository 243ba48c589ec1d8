"""The platform team's side of a stand: what it must provide, and the preflight that checks it is there."""
