"""Deep merge, the one rule for every overlay (stand defaults, per-stand overrides)."""

from __future__ import annotations

import copy
from typing import Any


def deep_merge(base: Any, override: Any) -> Any:
    """Mappings merge key by key; anything else in ``override`` (lists, scalars, null) replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = {k: copy.deepcopy(v) for k, v in base.items()}
        for key, value in override.items():
            out[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(override)
