#!/bin/sh
# `server ...` (MinIO's command) starts moto's S3 server on MinIO's port; anything else runs as given.
set -eu
if [ "${1:-}" = server ]; then exec moto_server -H 0.0.0.0 -p 9000; fi
exec "$@"
