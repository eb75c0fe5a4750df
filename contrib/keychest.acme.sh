#!/usr/bin/env sh
# KeyChest deploy hook for acme.sh: tell KeyChest about the issued certificate and watch the
# hosts it names.
#
# Install:
#   cp keychest.acme.sh ~/.acme.sh/deploy/keychest.sh
#   export KEYCHEST_URL=https://keychest.example.com
#   export KEYCHEST_API_KEY=...        # or KEYCHEST_EMAIL=you@example.com to claim one
#   acme.sh --deploy -d example.com --deploy-hook keychest
# acme.sh saves KEYCHEST_URL, KEYCHEST_API_KEY and KEYCHEST_PORT with the domain's config, so
# renewals run the hook again with the same settings.

keychest_deploy() {
  _cdomain="$1"
  _ckey="$2"
  _ccert="$3"
  _cca="$4"
  _cfullchain="$5"

  # acme.sh helpers exist when run by acme.sh; fall back to plain shell otherwise.
  if command -v _getdeployconf >/dev/null 2>&1; then
    _getdeployconf KEYCHEST_URL
    _getdeployconf KEYCHEST_API_KEY
    _getdeployconf KEYCHEST_EMAIL
    _getdeployconf KEYCHEST_PORT
  fi
  if [ -z "$KEYCHEST_URL" ]; then
    echo "keychest: set KEYCHEST_URL, e.g. https://keychest.example.com" >&2
    return 0
  fi
  KEYCHEST_URL=${KEYCHEST_URL%/}
  KEYCHEST_PORT=${KEYCHEST_PORT:-443}

  if [ -z "$KEYCHEST_API_KEY" ]; then
    if [ -z "$KEYCHEST_EMAIL" ]; then
      echo "keychest: set KEYCHEST_API_KEY or KEYCHEST_EMAIL" >&2
      return 0
    fi
    _kc_key=$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 24)
    _kc_answer=$(curl -sS --max-time 30 -H 'Content-Type: application/json' \
      -d "{\"email\": \"$KEYCHEST_EMAIL\", \"api_key\": \"$_kc_key\"}" "$KEYCHEST_URL/api/v1.0/access/claim")
    case "$_kc_answer" in
      *'"status":"created"'*|*'"status": "created"'*) KEYCHEST_API_KEY=$_kc_key ;;
      *) echo "keychest: could not claim a key: $_kc_answer" >&2; return 0 ;;
    esac
    echo "keychest: claimed an API key for $KEYCHEST_EMAIL; confirm it from the email" >&2
  fi
  if command -v _savedeployconf >/dev/null 2>&1; then
    _savedeployconf KEYCHEST_URL "$KEYCHEST_URL"
    _savedeployconf KEYCHEST_API_KEY "$KEYCHEST_API_KEY"
    _savedeployconf KEYCHEST_PORT "$KEYCHEST_PORT"
  fi

  _kc_auth="Authorization: Bearer $KEYCHEST_API_KEY"
  if [ -r "$_ccert" ]; then
    _kc_answer=$(curl -sS --max-time 30 -H "$_kc_auth" --data-urlencode "certificate@$_ccert" \
      "$KEYCHEST_URL/api/v1.0/certificate/add")
    echo "keychest: certificate: $_kc_answer" >&2
  fi
  case "$_cdomain" in
    \*.*) ;;  # a wildcard is not a server
    *)
      _kc_answer=$(curl -sS --max-time 30 -H "$_kc_auth" --data-urlencode "domain=$_cdomain:$KEYCHEST_PORT" \
        "$KEYCHEST_URL/api/v1.0/servers/add")
      echo "keychest: $_cdomain: $_kc_answer" >&2 ;;
  esac
  return 0
}
