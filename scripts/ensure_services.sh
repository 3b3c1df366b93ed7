#!/usr/bin/env bash
# make test needs a real PostgreSQL and Redis: start them when installed but stopped.
set -uo pipefail
pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null || (echo > /dev/tcp/127.0.0.1/5432) 2>/dev/null; }
redis_ready() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_ready; then
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    echo "starting PostgreSQL"
    for version in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
  else
    echo "error: PostgreSQL is not answering on 127.0.0.1:5432 and is not installed (apt-get install postgresql)" >&2
    exit 1
  fi
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
fi
if ! redis_ready; then
  if command -v redis-server >/dev/null; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp >/dev/null
  else
    echo "error: Redis is not answering on 127.0.0.1:6379 and is not installed (apt-get install redis-server)" >&2
    exit 1
  fi
  for _ in $(seq 1 30); do redis_ready && break; sleep 1; done
fi
pg_ready || { echo "error: PostgreSQL did not start" >&2; exit 1; }
redis_ready || { echo "error: Redis did not start" >&2; exit 1; }
echo "PostgreSQL and Redis are up"
