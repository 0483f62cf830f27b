#!/usr/bin/env bash
# Checks that api/openapi.yaml is true to the code: schemathesis (PyPI) generates
# requests from the document and checks every answer against it (status codes,
# content types, headers, schemas, server errors, auth).
#
# Every check runs but positive_data_acceptance ("a schema-valid request is
# accepted"): the document cannot express every rule the API enforces (the name
# must lie in a served zone, failover/distribute only with Locality, timeout <=
# period, unique target names, address classes), so schema-valid requests are
# rightly refused with 409/422; those answers are still checked against the
# document like every other.
#
# The server runs inside a network namespace that has only a loopback interface,
# with schemathesis beside it: generated NameServices may name any address with a
# health check, and their probes must never leave the machine.
#
#   .ci/schemathesis.sh [path/to/gslb]      (root: it creates a network namespace)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-${CARGO_TARGET_DIR:-target}/debug/gslb}"
venv="${SCHEMATHESIS_VENV:-/var/tmp/gslb-schemathesis-venv}"
version="${SCHEMATHESIS_VERSION:-4.32.5}"
examples="${SCHEMATHESIS_EXAMPLES:-25}"

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$version"
fi

ns="gslb-st-$$"
work="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up

token="schemathesis-$$-token"
ip netns exec "$ns" env GSLB_API_TOKEN="$token" RUST_LOG=warn "$bin" serve \
  --zones-dir zones --data-dir "$work/data" \
  --dns-listen 127.0.0.1:1053 --api-listen 127.0.0.1:8080 2>"$work/gslb.log" &
pid=$!
for _ in $(seq 100); do
  ip netns exec "$ns" python3 -c 'import urllib.request,sys; urllib.request.urlopen("http://127.0.0.1:8080/healthz", timeout=1)' 2>/dev/null && break
  sleep 0.1
done

status=0
ip netns exec "$ns" "$venv/bin/schemathesis" run api/openapi.yaml \
  --url http://127.0.0.1:8080 \
  --header "Authorization: Bearer $token" \
  --checks all \
  --exclude-checks positive_data_acceptance \
  --max-examples "$examples" \
  --seed 1 \
  --no-color || status=$?
if [ "$status" -ne 0 ]; then
  echo "---- gslb log ----" >&2
  tail -n 50 "$work/gslb.log" >&2
fi
exit "$status"
