#!/bin/sh
# temporalio/server reads its database password from POSTGRES_PWD only (no *_FILE variable):
# take it from the compose secret, then run the image's own entrypoint (its CMD).
#   server-entrypoint.sh COMMAND...   (compose: /etc/temporal/entrypoint.sh)
set -eu
: "${POSTGRES_PWD_FILE:?set POSTGRES_PWD_FILE to the password file (a compose secret)}"
POSTGRES_PWD=$(cat "$POSTGRES_PWD_FILE")
export POSTGRES_PWD
exec "$@"
