#!/usr/bin/env bash
# Installs the Debian packages the test suite runs for real, when missing.
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v redis-server >/dev/null || need+=(redis-server)
# test/observability runs promtool and a real Prometheus against the stack.
command -v promtool >/dev/null && command -v prometheus >/dev/null || need+=(prometheus)
# The checkout browser tests drive Debian's Chromium (playwright-core never downloads one).
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "==> installing Debian packages: ${need[*]}"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
