# shellcheck shell=bash
# The toolchain of the client's release build (scripts/build-client-wasm.sh): a pinned nightly,
# because only nightly can rebuild core/alloc with `-Cpanic=immediate-abort`. Pinned so the
# shipped wasm does not change under us; EVENTWIRE_WASM_TOOLCHAIN overrides it. Sourced by
# build-client-wasm.sh and install-tools.sh.
wasm_toolchain() {
  echo "${EVENTWIRE_WASM_TOOLCHAIN:-nightly-2026-05-20}"
}
