"""Hypothesis settings for the fuzz suite: bounded (explicit example counts, per-example deadline), no example
database written into the tree; derandomized under CI so that a CI run is reproducible, random elsewhere."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fuzz", deadline=5000, database=None, derandomize=bool(os.environ.get("CI")), print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
settings.load_profile("fuzz")
