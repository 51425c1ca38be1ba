#!/usr/bin/env bash
# Debian packages the tests drive as real programs: chromium (the dashboard's browser tests, through Playwright
# with executable_path), prometheus with promtool and prometheus-alertmanager (the alert rules and the outside
# watchdog's end-to-end test). Idempotent: installs only what is missing. Used by .ci/run and by developers.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 \
  || missing+=(prometheus-alertmanager)
if [ ${#missing[@]} -gt 0 ]; then
  echo "packages: installing ${missing[*]} (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian packages start their services on install; the tests start their own instances on other ports.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
  pkill -x "$svc" 2>/dev/null || true
done
