#!/usr/bin/env bash
# Runs every test: unit tests of the pure crates, then the end-to-end suite
# against the built .wasm components. Installs what is missing (the wasm
# target, redis-server), builds the components, and runs a private Redis on a
# free port for the suite, stopped afterwards.
#
#   scripts/test.sh                          # test host (wasmtime), the default
#   DARKROOM_TEST_RUNTIME=spin scripts/test.sh   # the same suite against `spin up`
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_wasm_target
ensure_redis_server
build_components

if [ -z "${DARKROOM_TEST_REDIS_URL:-}" ]; then
  port=$((20000 + RANDOM % 20000))
  while port_in_use "$port"; do port=$((port + 1)); done
  start_redis "$port"
  trap 'kill "$REDIS_PID" 2>/dev/null || true' EXIT
  export DARKROOM_TEST_REDIS_URL="redis://127.0.0.1:$port"
fi

echo "==> tests (runtime: ${DARKROOM_TEST_RUNTIME:-host}, redis: $DARKROOM_TEST_REDIS_URL)" >&2
cargo test --locked -p darkroom-core -p darkroom-spin -p darkroom-tests "$@"
