#!/usr/bin/env bash
# Make a Chromium available for Playwright, idempotently.
# Playwright's own browser download is blocked on offline machines, so we use the system
# Chromium (Debian package `chromium`, /usr/bin/chromium) when Playwright has none.
set -euo pipefail
PY=${1:-python3}
if "$PY" - <<'PYEOF' 2>/dev/null
import os, sys
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    sys.exit(0 if os.path.exists(p.chromium.executable_path) else 1)
PYEOF
then
  echo "chromium: Playwright's own browser is installed"; exit 0
fi
for exe in /usr/bin/chromium /usr/bin/chromium-browser; do
  if [ -x "$exe" ]; then echo "chromium: using $exe"; exit 0; fi
done
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "chromium: installing the Debian package"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  exit 0
fi
echo "chromium: not found. Install it (e.g. 'sudo apt-get install chromium') or run 'playwright install chromium'." >&2
exit 1
