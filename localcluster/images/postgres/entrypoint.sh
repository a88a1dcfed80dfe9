#!/bin/sh
# The official postgres image's contract, reduced to what charts use: initialise PGDATA
# on first start from POSTGRES_* variables, then exec the server on every address.
set -eu
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
if [ "${1:-postgres}" != "postgres" ]; then
    exec "$@"
fi
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "POSTGRES_PASSWORD is not set: the stand-in, like the official image, needs it" >&2
    exit 1
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    password_file="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$password_file"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words, as upstream
    initdb --username="$POSTGRES_USER" --pwfile="$password_file" --auth=scram-sha-256 \
        ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    # TLS with a self-signed certificate, so clients that ask for sslmode=require (as
    # values/production.yaml does) connect; no client verifies it.
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=postgres" \
        -keyout "$PGDATA/server.key" -out "$PGDATA/server.crt" 2>/dev/null
    chmod 600 "$PGDATA/server.key"
    echo "ssl = on" >> "$PGDATA/postgresql.conf"
    if [ "$POSTGRES_DB" != "postgres" ]; then
        postgres --single -D "$PGDATA" postgres <<SQL >/dev/null
CREATE DATABASE "$POSTGRES_DB" OWNER "$POSTGRES_USER";
SQL
    fi
fi
shift || true
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
