#!/usr/bin/env bash
# Runs Darkroom locally on http://127.0.0.1:3000: starts a redis-server on
# 6379 unless one is already there, then `spin up --build`.
#
# Without the Spin CLI, DARKROOM_RUNTIME=host runs the same components in
# Darkroom's own wasmtime test host instead (a stand-in, not Spin).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_wasm_target
runtime=${DARKROOM_RUNTIME:-spin}
if [ "$runtime" = spin ] && ! command -v spin >/dev/null; then
  cat >&2 <<'MSG'
The Spin CLI is not installed. Install it (https://spinframework.dev/install):
  curl -fsSL https://spinframework.dev/downloads/install.sh | bash && sudo mv spin /usr/local/bin/
or run the components in Darkroom's test host instead:
  DARKROOM_RUNTIME=host scripts/up.sh
MSG
  exit 1
fi

redis_url=${SPIN_VARIABLE_REDIS_URL:-redis://127.0.0.1:6379}
if [ "$redis_url" = redis://127.0.0.1:6379 ] && ! port_in_use 6379; then
  ensure_redis_server
  echo "==> starting redis-server on 127.0.0.1:6379 (stopped when this script ends)" >&2
  start_redis 6379
  trap 'kill "$REDIS_PID" 2>/dev/null || true' EXIT
fi

case "$runtime" in
  spin) spin up --build --listen 127.0.0.1:3000 "$@" ;;
  host)
    build_components
    # The dev profile builds dependencies optimised and shares them with scripts/test.sh.
    cargo run -p darkroom-tests --bin darkroom-host -- --listen 127.0.0.1:3000 "$@" ;;
  *) echo "DARKROOM_RUNTIME must be spin or host" >&2; exit 1 ;;
esac
