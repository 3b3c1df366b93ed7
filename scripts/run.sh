#!/usr/bin/env bash
# make run: migrate the SQLite default, load the demo data, start one worker and the API.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://$HOST:$PORT}
export LOG_JSON=${LOG_JSON:-false}
mkdir -p var

# Reading the settings the first time makes a random SECRET_KEY and keeps it in var/secret_key (unless
# SECRET_KEY is set): every command below, the worker and the API read that same one from this folder.
redis_url=$($BIN/python -c 'from service.settings import get_settings; print(get_settings().redis_url)')
if ! $BIN/python - "$redis_url" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
except Exception:
    sys.exit(1)
PY
then
  if command -v redis-server >/dev/null && [[ "$redis_url" == redis://127.0.0.1:6379* || "$redis_url" == redis://localhost:6379* ]]; then
    echo "Redis is not answering at $redis_url: starting a local redis-server"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir "$PWD/var" >/dev/null
    sleep 0.5
  else
    echo "error: no Redis answers at $redis_url." >&2
    echo "Install one (Debian: apt-get install redis-server) or set REDIS_URL to a running Redis." >&2
    exit 1
  fi
fi

$BIN/intake migrate
# The demo map only into a database without one (never over a city's own), then the catalogue,
# which is checked against that map.
$BIN/intake jurisdictions demo
$BIN/intake catalogue load service/catalogue/catalogue.yaml --keep-own
demo_key=$($BIN/intake demo-key)

$BIN/intake worker &
worker_pid=$!
trap 'kill $worker_pid 2>/dev/null; wait $worker_pid 2>/dev/null' EXIT INT TERM

cat <<MSG

  Citizen intake is starting on http://$HOST:$PORT
    API docs:      http://$HOST:$PORT/docs
    Demo API key:  $demo_key
    Try:           curl -X POST http://$HOST:$PORT/v1/reports -H "X-API-Key: $demo_key" \\
                     -H "Content-Type: application/json" \\
                     -d '{"description":"Đèn đường trước chợ Bến Thành bị tắt 3 đêm nay","lat":10.7725,"lon":106.698}'

MSG
$BIN/intake serve --host "$HOST" --port "$PORT"
