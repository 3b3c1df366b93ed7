#!/bin/sh
# Like the official image: other containers on the network may connect (Debian's build would refuse
# them in protected mode, as it has no password), and Redis runs as the redis user.
set -eu
if [ "${1:-}" != redis-server ]; then exec "$@"; fi
shift
chown redis:redis /data
exec setpriv --reuid=redis --regid=redis --init-groups redis-server --protected-mode no --bind 0.0.0.0 "$@"
