#!/usr/bin/env bash
# Runs every test: unit tests of the pure crates, then the end-to-end suite
# against the built .wasm components in four passes: the default (blobs in
# the key-value store), `blob_store = "s3"` against a real S3-compatible
# server, the key-value store on Redis (a runtime config, as multi-machine
# deployments run it), and the HTTP-only profile (spin.http-only.toml, no
# Redis trigger; the topology tests, which need one, are skipped there).
# Installs what is missing (the wasm target, redis-server, s3s-fs, Chromium
# and playwright-core, the real photographs), builds the
# components, and runs a private Redis and S3 server on free ports, stopped
# afterwards.
#
#   scripts/test.sh                          # test host (wasmtime), the default
#   DARKROOM_TEST_RUNTIME=spin scripts/test.sh   # the same suite against `spin up`
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_wasm_target
ensure_redis_server
ensure_s3_server
ensure_browser
ensure_photos
build_components
# The browser test uploads a real photograph (Debian's Kleiber wallpaper, 20 MP, 4.4 MB).
export DARKROOM_TEST_PHOTO="${DARKROOM_TEST_PHOTO:-$PWD/$PHOTOS/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg}"

cleanup=()
trap 'for pid in "${cleanup[@]}"; do kill "$pid" 2>/dev/null || true; done' EXIT
if [ -z "${DARKROOM_TEST_REDIS_URL:-}" ]; then
  port=$(free_port)
  start_redis "$port"
  cleanup+=("$REDIS_PID")
  export DARKROOM_TEST_REDIS_URL="redis://127.0.0.1:$port"
fi

# Both passes select the same packages, so that cargo resolves the same
# features and the second pass reuses the first one's build.
packages=(-p darkroom-core -p darkroom-imaging -p darkroom-jpeg-decoder -p darkroom-vp8-decoder -p darkroom-spin -p darkroom-tests)
echo "==> tests (runtime: ${DARKROOM_TEST_RUNTIME:-host}, redis: $DARKROOM_TEST_REDIS_URL, blobs: key-value)" >&2
cargo test --locked "${packages[@]}" "$@"

s3_root=$(mktemp -d)
s3_port=$(free_port)
export DARKROOM_TEST_S3_ACCESS_KEY=darkroom-test DARKROOM_TEST_S3_SECRET_KEY="darkroom-test-secret-$RANDOM"
start_s3 "$s3_port" "$s3_root" "$DARKROOM_TEST_S3_ACCESS_KEY" "$DARKROOM_TEST_S3_SECRET_KEY"
cleanup+=("$S3_PID")
export DARKROOM_TEST_BLOB_STORE=s3 DARKROOM_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
echo "==> end-to-end suite again with blob_store = s3 ($DARKROOM_TEST_S3_ENDPOINT)" >&2
cargo test --locked "${packages[@]}" --test e2e "$@"
unset DARKROOM_TEST_BLOB_STORE

echo "==> end-to-end suite again with the key-value store on Redis (runtime config, a Redis per deployment)" >&2
DARKROOM_TEST_KV=redis cargo test --locked "${packages[@]}" --test e2e "$@"

echo "==> end-to-end suite again with the HTTP-only profile (spin.http-only.toml)" >&2
DARKROOM_TEST_MANIFEST=spin.http-only.toml cargo test --locked "${packages[@]}" --test e2e "$@" -- --skip topology:: --skip notify::a_notifier_killed
