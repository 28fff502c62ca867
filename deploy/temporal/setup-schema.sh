#!/bin/sh
# One shot, before the server: create Temporal's two PostgreSQL databases and bring their schemas
# to the version this admin-tools image ships. Every step is idempotent (an existing database is
# kept, `setup-schema -v 0.0` does nothing on a database past 0.0), so this runs at every
# `docker compose up`, and after an image upgrade it is what applies the new schema versions.
set -eu
: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD_FILE:?}"
SQL_PASSWORD=$(cat "$SQL_PASSWORD_FILE")
export SQL_PASSWORD
port=${DB_PORT:-5432}
schema=/etc/temporal/schema/postgresql/v12

sql() {
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$port" -u "$POSTGRES_USER" "$@"
}

# PostgreSQL reports healthy before it may accept this user's logins: retry the first step.
attempt=1
until sql --db temporal create; do
    if [ "$attempt" -ge 30 ]; then
        echo "setup-schema: cannot create the temporal database; is PostgreSQL up?" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    sleep 2
done

for pair in temporal:temporal temporal_visibility:visibility; do
    db=${pair%%:*}
    sql --db "$db" create
    sql --db "$db" setup-schema -v 0.0
    sql --db "$db" update-schema -d "$schema/${pair#*:}/versioned"
    echo "setup-schema: $db is at this image's schema version"
done
