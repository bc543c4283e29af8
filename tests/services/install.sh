#!/usr/bin/env bash
# Install the services the tests start (Debian/Ubuntu packages), when root and missing.
# The tests start each service themselves on free loopback ports (tests/services/*.py);
# the system units that the packages enable are stopped so they do not hold ports or disk.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have mosquitto        || need+=(mosquitto mosquitto-clients)
have influxd          || need+=(influxdb)
have victoria-metrics || need+=(victoria-metrics)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
have chromium         || need+=(chromium chromium-driver)
have shellcheck       || need+=(shellcheck)        # hardware/pi-setup.sh is linted by the tests
have pdftoppm         || need+=(poppler-utils)     # the quick-start card's PDF is rendered to look at
have openssl          || need+=(openssl)           # suitcase services makes the broker's CA with it
have systemd-analyze  || need+=(systemd)           # deploy/systemd units are checked with verify

if [ ${#need[@]} -eq 0 ]; then
  echo "services: all installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "services: missing ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
  exit 0  # the tests that need them skip, or fail under SUITCASE_REQUIRE_SERVICES=1
fi
echo "services: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
for unit in mosquitto influxdb victoria-metrics postgresql; do
  systemctl stop "$unit" >/dev/null 2>&1 || service "$unit" stop >/dev/null 2>&1 || true
done
echo "services: installed"
