#!/bin/sh
# The Web UI decodes payloads in the operator's browser through the API's codec endpoint,
# $JOBSHEET_API_URL/codec/<token>. The token is a secret, so it cannot be written into
# docker-compose.yml: build TEMPORAL_CODEC_ENDPOINT from the secret file at start, then run the
# image's own entrypoint.   ui-entrypoint.sh COMMAND...   (compose: ./start-ui-server.sh)
set -eu
: "${JOBSHEET_API_URL:?set JOBSHEET_API_URL to the API as the operator's browser reaches it}"
: "${CODEC_TOKEN_FILE:?set CODEC_TOKEN_FILE to the codec token file (a compose secret)}"
token=$(cat "$CODEC_TOKEN_FILE")
[ -n "$token" ] || { echo "ui-entrypoint: $CODEC_TOKEN_FILE is empty" >&2; exit 1; }
TEMPORAL_CODEC_ENDPOINT="${JOBSHEET_API_URL%/}/codec/$token"
export TEMPORAL_CODEC_ENDPOINT
exec "$@"
