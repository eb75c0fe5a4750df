#!/bin/sh
# KeyChest deploy hook for certbot: after every renewal, tell KeyChest about the renewed
# certificate and watch the hosts it names, so KeyChest checks that the new certificate is
# really deployed on every address.
#
# Install:
#   cp keychest-certbot-deploy-hook.sh /etc/letsencrypt/renewal-hooks/deploy/keychest.sh
#   chmod 755 /etc/letsencrypt/renewal-hooks/deploy/keychest.sh
# Configure (environment, or /etc/keychest/hook.conf as shell assignments):
#   KEYCHEST_URL       your KeyChest, e.g. https://keychest.example.com (no trailing slash)
#   KEYCHEST_API_KEY   a key made in the dashboard (API keys), or leave it empty and set
#   KEYCHEST_EMAIL     to claim a key on first run: the owner of the address confirms it by
#                      email; until then nothing is scanned. The claimed key is saved in
#                      KEYCHEST_CONF (default /etc/keychest/hook.conf, mode 600).
#   KEYCHEST_PORT      port to watch on each name (default 443)
# certbot sets RENEWED_LINEAGE (the live/<name> folder) and RENEWED_DOMAINS (space separated).
set -eu

KEYCHEST_CONF=${KEYCHEST_CONF:-/etc/keychest/hook.conf}
# shellcheck disable=SC1090
[ -r "$KEYCHEST_CONF" ] && . "$KEYCHEST_CONF"
KEYCHEST_URL=${KEYCHEST_URL:-}
KEYCHEST_API_KEY=${KEYCHEST_API_KEY:-}
KEYCHEST_EMAIL=${KEYCHEST_EMAIL:-}
KEYCHEST_PORT=${KEYCHEST_PORT:-443}
: "${RENEWED_LINEAGE:?certbot sets RENEWED_LINEAGE}"
: "${RENEWED_DOMAINS:?certbot sets RENEWED_DOMAINS}"

log() { echo "keychest: $*" >&2; }

if [ -z "$KEYCHEST_URL" ]; then
  log "set KEYCHEST_URL (in the environment or $KEYCHEST_CONF)"
  exit 0  # never fail the renewal because of monitoring
fi
KEYCHEST_URL=${KEYCHEST_URL%/}

# Claim a key once, if none is configured: 24 random characters of [A-Za-z0-9].
if [ -z "$KEYCHEST_API_KEY" ]; then
  if [ -z "$KEYCHEST_EMAIL" ]; then
    log "set KEYCHEST_API_KEY or KEYCHEST_EMAIL (in the environment or $KEYCHEST_CONF)"
    exit 0  # never fail the renewal because of monitoring
  fi
  key=$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 24)
  answer=$(curl -sS --max-time 30 -H 'Content-Type: application/json' \
    -d "{\"email\": \"$KEYCHEST_EMAIL\", \"api_key\": \"$key\"}" "$KEYCHEST_URL/api/v1.0/access/claim" || true)
  case "$answer" in
    *'"status":"created"'*|*'"status": "created"'*)
      mkdir -p "$(dirname "$KEYCHEST_CONF")"
      umask 077
      printf 'KEYCHEST_API_KEY=%s\n' "$key" >>"$KEYCHEST_CONF"
      KEYCHEST_API_KEY=$key
      log "claimed an API key for $KEYCHEST_EMAIL; confirm it from the email KeyChest sent" ;;
    *)
      log "could not claim a key: $answer"
      exit 0 ;;
  esac
fi

auth="Authorization: Bearer $KEYCHEST_API_KEY"
if [ -r "$RENEWED_LINEAGE/cert.pem" ]; then
  answer=$(curl -sS --max-time 30 -H "$auth" --data-urlencode "certificate@$RENEWED_LINEAGE/cert.pem" \
    "$KEYCHEST_URL/api/v1.0/certificate/add" || true)
  log "certificate: $answer"
fi
for domain in $RENEWED_DOMAINS; do
  case "$domain" in
    \*.*) continue ;;  # a wildcard is not a server; watch the domain in the dashboard instead
  esac
  answer=$(curl -sS --max-time 30 -H "$auth" --data-urlencode "domain=$domain:$KEYCHEST_PORT" \
    "$KEYCHEST_URL/api/v1.0/servers/add" || true)
  log "$domain: $answer"
done
exit 0
