#!/usr/bin/env bash
# Dump the PostgreSQL database named by DATABASE_URL into a timestamped custom-format file.
# Usage: DATABASE_URL=postgres://… scripts/backup.sh [folder]   (default folder: var/backups)
set -euo pipefail
: "${DATABASE_URL:?DATABASE_URL must point at PostgreSQL}"
case "$DATABASE_URL" in postgres://*|postgresql://*) ;; *) echo "backup.sh: only PostgreSQL is supported" >&2; exit 2;; esac
folder="${1:-var/backups}"
mkdir -p "$folder"
file="$folder/keychest-$(date -u +%Y%m%dT%H%M%SZ).dump"
pg_dump --format=custom --no-owner --no-privileges --dbname="$DATABASE_URL" --file="$file.partial"
mv "$file.partial" "$file"   # a finished name means a finished dump
echo "$file"
