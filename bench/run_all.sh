#!/usr/bin/env bash
# Every benchmark, one after the other, on PostgreSQL; output (JSON lines) in var/bench/.
# Run it on an idle machine: the load average is printed before each benchmark.
#   bench/run_all.sh            # the issue sizes (CT and weekly reports at --full)
#   bench/run_all.sh --quick    # the scaled defaults
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${PG:-postgres://postgres@127.0.0.1:5432}
OUT=var/bench
mkdir -p "$OUT"
FULL=--full
[ "${1:-}" = "--quick" ] && FULL=""
stamp=$(date -u +%Y%m%dT%H%M)

ensure_db() { psql "$PG/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname='$1'" | grep -q 1 \
  || psql "$PG/postgres" -qc "CREATE DATABASE $1"; }

run() {
  local name=$1; shift
  echo "=== $name (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  flock /tmp/kc-bench.lock "$@" | tee "$OUT/$name-$stamp.json"
}

ensure_db kc_bench_scanner
ensure_db kc_api_bench
ensure_db kc_bench_dashboard
ensure_db kc_bench_reports
ensure_db kc_bench_ct
run scanner env DATABASE_URL="$PG/kc_bench_scanner" REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}" .venv/bin/python bench/scan_throughput.py
run api env DATABASE_URL="$PG/kc_api_bench" .venv/bin/python bench/api.py
run dashboard env DATABASE_URL="$PG/kc_bench_dashboard" .venv/bin/python bench/dashboard.py
run metrics env DATABASE_URL="$PG/kc_bench_dashboard" .venv/bin/python bench/metrics.py
run weekly_reports env DATABASE_URL="$PG/kc_bench_reports" .venv/bin/python bench/weekly_reports.py $FULL
run ct_ingest env DATABASE_URL="$PG/kc_bench_ct" .venv/bin/python bench/ct_ingest.py $FULL
