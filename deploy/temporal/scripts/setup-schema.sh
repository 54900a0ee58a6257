#!/bin/sh
# Creates Temporal's two databases on PostgreSQL and brings their schemas up to the version this
# admin-tools image carries (the same version as the server image). Safe to run again: `create`
# fails on an existing database, which is fine, and update-schema only applies what is missing.
set -eu
: "${POSTGRES_SEEDS:?set POSTGRES_SEEDS to the PostgreSQL host}"
: "${POSTGRES_USER:?set POSTGRES_USER}"
: "${SQL_PASSWORD:?set SQL_PASSWORD (temporal-sql-tool reads the password from it)}"
PORT="${DB_PORT:-5432}"
SCHEMA=/etc/temporal/schema/postgresql/v12

until nc -z -w 5 "$POSTGRES_SEEDS" "$PORT"; do echo "waiting for PostgreSQL at $POSTGRES_SEEDS:$PORT"; sleep 2; done

for DB in temporal temporal_visibility; do
  case "$DB" in temporal) DIR="$SCHEMA/temporal/versioned" ;; *) DIR="$SCHEMA/visibility/versioned" ;; esac
  tool() { temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$PORT" -u "$POSTGRES_USER" --db "$DB" "$@"; }
  tool create || echo "database $DB exists"
  # setup-schema -v 0.0 only creates the version table; it is a no-op on an initialised database.
  tool setup-schema -v 0.0 || true
  tool update-schema -d "$DIR"
done
echo "Temporal schema ready"
