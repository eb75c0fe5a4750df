#!/usr/bin/env bash
# Restore drill: restore a dump into a scratch database and compare the row count of every
# table with the live database. Exits non-zero when the restore fails or any count differs.
# Usage: DATABASE_URL=postgres://… scripts/restore_drill.sh path/to/file.dump
set -euo pipefail
: "${DATABASE_URL:?DATABASE_URL must point at PostgreSQL}"
dump="${1:?give the dump file to restore}"
scratch="keychest_restore_drill_$$"
base="${DATABASE_URL%/*}"
query="${DATABASE_URL#*\?}"; [ "$query" = "$DATABASE_URL" ] && query="" || query="?$query"
scratch_url="$base/$scratch$query"
admin_url="$base/postgres$query"

psql -q "$admin_url" -c "CREATE DATABASE $scratch" >/dev/null
trap 'psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $scratch" >/dev/null' EXIT
pg_restore --no-owner --no-privileges --exit-on-error --dbname="$scratch_url" "$dump"

counts() {
  psql -At "$1" -c "SELECT table_name FROM information_schema.tables WHERE table_schema='public' AND table_type='BASE TABLE' ORDER BY 1" |
  while read -r table; do
    printf '%s %s\n' "$table" "$(psql -At "$1" -c "SELECT count(*) FROM \"$table\"")"
  done
}
if diff <(counts "$DATABASE_URL") <(counts "$scratch_url"); then
  echo "restore drill passed: $(counts "$scratch_url" | wc -l) tables, every row count matches"
else
  echo "restore drill FAILED: row counts differ (live < > restored)" >&2
  exit 1
fi
