"""gunicorn's settings for KeyChest's web process (the Dockerfile and docker-compose.yml run it;
`bench/api.py` measures the API under it).

Threaded workers (gthread): while one request waits on PostgreSQL or Redis another thread of the
process runs, keep-alive connections stay open for scripts that make several calls, and a slow
client holds one thread rather than a whole process (sync workers need a buffering proxy in
front for that). The defaults suit a small machine: one process per core, four threads each.
Override any of it the usual gunicorn ways: `WEB_CONCURRENCY` (processes),
`GUNICORN_CMD_ARGS="--threads 8 --timeout 60"`, or flags on the command line.
"""

from __future__ import annotations

import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
threads = 4
# A worker whose main loop is silent this long is restarted. (With threads a long request does
# not silence it: what bounds a request is the timeout of each of its own steps — DNS, TLS
# probes, HTTP — see monitors/ and keychest/safehttp.py.)
timeout = 30
graceful_timeout = 30
keepalive = 5
