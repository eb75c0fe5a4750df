"""Settings for bench/api.py: the production settings plus the bare baseline views and a query
counter (the same middleware runs for both paths, so it costs both the same)."""

from __future__ import annotations

from keychest.settings import *  # noqa: F403
from keychest.settings import MIDDLEWARE

ROOT_URLCONF = "api_bench_urls"
MIDDLEWARE = ["api_bench_urls.QueryCountMiddleware", *MIDDLEWARE]
