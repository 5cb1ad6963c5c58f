#!/usr/bin/env bash
# Installs the Debian packages the test suite runs for real, when missing.
# `system-deps.sh up-ha`: only what `make up-ha` runs (PostgreSQL, Redis).
set -euo pipefail
only=${1:-all}
missing() {
  need=()
  if [ "$only" = up-ha ]; then
    command -v redis-server >/dev/null || need+=(redis-server)
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
    return 0
  fi
  command -v openssl >/dev/null || need+=(openssl)
  command -v redis-server >/dev/null || need+=(redis-server)
  # test/observability runs promtool and a real Prometheus against the stack.
  command -v promtool >/dev/null && command -v prometheus >/dev/null || need+=(prometheus)
  # The checkout browser tests drive Debian's Chromium (playwright-core never downloads one).
  [ -x /usr/bin/chromium ] || need+=(chromium)
  # Multi-replica tests run private PostgreSQL clusters (initdb on a free port,
  # packages/testkit/src/postgres.ts), never the machine's own server.
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
  return 0
}
missing
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "==> installing Debian packages: ${need[*]}"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
# postgresql's post-install creates and starts its own cluster (5432, or the next
# free port): the tests never use it. Where that start fails (no init system,
# port trouble) apt reports an error though the binaries are unpacked, so
# success here means "what the tests run is now present".
if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null; then
  missing
  if [ ${#need[@]} -ne 0 ]; then
    echo "system-deps: still missing after apt-get install: ${need[*]}" >&2
    exit 1
  fi
  echo "system-deps: apt-get install reported an error (likely the postgresql package starting its own cluster); everything the tests need is installed" >&2
fi
