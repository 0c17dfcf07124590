#!/usr/bin/env bash
# Installs what the test suite needs from the system's package manager, only when it is missing:
# Debian's Chromium (the console's browser tests), CJK fonts (so Chinese renders in screenshots) and a
# Java runtime (the analyses' PySpark local-mode test).
# PostgreSQL is handled by the test harness itself (tests/pg_harness.py).
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
fc-list 2>/dev/null | grep -qi "noto sans cjk" || need+=(fonts-noto-cjk)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "system-deps: cannot install ${need[*]} (no apt-get); browser and Spark tests will be skipped" >&2
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system-deps: installing ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
