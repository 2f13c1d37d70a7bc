"""Settings resolved when used, never at import: an explicit value, else an environment variable, else a
default. The definitions stay the same everywhere, and no secret is baked into code or shown in the UI (an
unset ``dg.EnvVar`` would instead fail every evaluation before the code runs)."""

from __future__ import annotations

import os


def setting(value: str | None, env_name: str, default: str | None = None) -> str | None:
    """``value`` if given, else the environment variable ``env_name`` if set and not blank, else default."""
    if value not in (None, ""):
        return value
    from_env = os.environ.get(env_name, "").strip()
    return from_env or default
