#!/usr/bin/env bash
# Supply-chain checks, the same locally and in CI:
#   1. cargo-deny over the whole workspace (deny.toml): licences, bans (duplicate versions are
#      warnings), sources; always.
#   2. cargo-deny advisories against a local copy of the RustSec advisory database, when one
#      is at hand. The database is a GitHub repository and this machine (like CI) cannot
#      reach GitHub, so without a copy the step is skipped and says so.
#   3. npm/: the runtime dependencies' licences (from package-lock.json) and
#      `npm audit --omit=dev`.
# Installs cargo-deny (pinned) when it is missing.
#
# Usage: scripts/audit.sh
# Environment:
#   EVENTWIRE_ADVISORY_DB  a git repository (bare or not) of rustsec/advisory-db to read the
#                          advisories from; default .tools/advisory-db. Its newest commit on
#                          `main` is copied into .tools/advisory-dbs/ for cargo-deny.
#   EVENTWIRE_AUDIT_STRICT=1  fail, rather than skip, when a source of advisories is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2
# cargo-deny keeps each advisory database in <db-path>/<last URL segment>-<hash of the URL>;
# for deny.toml's db-urls and cargo-deny 0.20 that is this name.
DB_ROOT="${EVENTWIRE_ADVISORY_DBS:-.tools/advisory-dbs}"
DB_DIR="$DB_ROOT/advisory-db-3157b0e258782691"
DB_SOURCE="${EVENTWIRE_ADVISORY_DB:-.tools/advisory-db}"
# The licences deny.toml allows ([licenses] allow): npm's runtime dependencies get the same.
ALLOWED_LICENSES=$(sed -n '/^\[licenses\]/,/^\[/{/^allow = \[/,/^\]/p}' deny.toml | grep -o '"[^"]*"' | tr -d '"' | xargs)
[[ -n "$ALLOWED_LICENSES" ]] || { echo "no [licenses] allow list found in deny.toml" >&2; exit 1; }
skipped=()

step() { printf '\n==> %s\n' "$*"; }
skip() {
  printf 'SKIPPED: %s\n' "$*"
  skipped+=("$*")
}

step "cargo-deny $CARGO_DENY_VERSION"
if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
  # About 4 minutes of CPU on a 2-core machine, once.
  cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked
fi
cargo deny --version

step "cargo deny: licences, bans, sources"
cargo deny --locked check licenses bans sources

step "cargo deny: advisories (RustSec)"
# A repository with the database's layout (so never this repository, which .tools/ is in).
if [[ -d "$DB_SOURCE" ]] && git -C "$DB_SOURCE" cat-file -e main:crates 2>/dev/null; then
  source_url="file://$(cd "$DB_SOURCE" && pwd)"
  if [[ -d "$DB_DIR/.git" ]]; then
    git -C "$DB_DIR" fetch --quiet --depth 1 "$source_url" main
    git -C "$DB_DIR" reset --quiet --hard FETCH_HEAD
  else
    mkdir -p "$DB_ROOT"
    git clone --quiet --depth 1 --branch main "$source_url" "$DB_DIR"
  fi
  db_date=$(git -C "$DB_DIR" log -1 --format=%cs)
  db_age_days=$(( ($(date +%s) - $(git -C "$DB_DIR" log -1 --format=%ct)) / 86400 ))
  echo "advisory database from $DB_SOURCE, as of $db_date ($db_age_days days old)"
  if (( db_age_days > 30 )); then
    echo "warning: the advisory database is $db_age_days days old; advisories published since are not checked"
  fi
  # --offline: never try to fetch it (cargo-deny would go to GitHub).
  EVENTWIRE_ADVISORY_DBS="$DB_ROOT" cargo deny --locked --offline check advisories
else
  skip "RustSec advisories: no copy of rustsec/advisory-db at $DB_SOURCE (set EVENTWIRE_ADVISORY_DB to a clone of it); this machine cannot reach GitHub to fetch one"
fi

step "npm/: licences of the runtime dependencies"
# Every package the published package pulls in at run time (not dev, not the package itself)
# must be under a licence deny.toml allows.
ALLOWED_LICENSES="$ALLOWED_LICENSES" node -e '
  const lock = require("./npm/package-lock.json");
  const allowed = new Set(process.env.ALLOWED_LICENSES.split(" "));
  // "A OR B": one of them allowed. Anything with AND, WITH or parentheses: every licence
  // named in it allowed (stricter than SPDX needs, never looser).
  const ok = (expr) => {
    const text = String(expr ?? "");
    const ids = text.split(/[\s()]+/).filter((t) => t && t !== "OR" && t !== "AND");
    return /\bAND\b|\bWITH\b|\(/.test(text) ? ids.every((id) => allowed.has(id)) : ids.some((id) => allowed.has(id));
  };
  const runtime = Object.entries(lock.packages).filter(([path, p]) => path !== "" && !p.dev);
  const bad = runtime.filter(([, p]) => !ok(p.license));
  for (const [path, p] of runtime) console.log(`${path.replace(/^.*node_modules\//, "")}@${p.version}: ${p.license}`);
  console.log(`${runtime.length} runtime dependencies`);
  if (bad.length) {
    for (const [path, p] of bad) console.error(`not allowed: ${path} (${p.license ?? "no licence"})`);
    process.exit(1);
  }
'

step "npm audit --omit=dev"
audit_log=$(mktemp)
trap 'rm -f "$audit_log"' EXIT
if (cd npm && npm audit --omit=dev) 2>&1 | tee "$audit_log"; then
  :
elif grep -q "audit endpoint returned an error" "$audit_log"; then
  # The registry this machine reaches answers the bulk advisory endpoint with 405. With no
  # runtime dependency npm sends nothing and never gets there.
  skip "npm advisories: the registry's audit endpoint cannot be reached from here"
else
  exit 1
fi

echo
if (( ${#skipped[@]} )); then
  printf 'audit passed, with %d check(s) skipped:\n' "${#skipped[@]}"
  printf '  - %s\n' "${skipped[@]}"
  if [[ "${EVENTWIRE_AUDIT_STRICT:-}" == 1 ]]; then
    echo "EVENTWIRE_AUDIT_STRICT=1: a skipped check is a failure"
    exit 1
  fi
else
  echo "audit passed"
fi
