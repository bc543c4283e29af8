#!/usr/bin/env bash
# Set up a Raspberry Pi for IoT Suitcase: switch on I2C, install the edge agent from a wheel into
# its own venv, write the agent's config with this Pi's claim code, install the systemd service.
#
#   sudo bash pi-setup.sh --wheel iot_suitcase-X.Y.Z-py3-none-any.whl \
#       --claim-code CODE --server-url https://suitcase.example.org
#
# Safe to run twice: each step checks what is there and changes only what differs. Run it again
# with a newer wheel to update the agent. With --root DIR every file goes under DIR and system
# commands (raspi-config, apt-get, useradd, systemctl) are printed, not run: the tests use this.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo bash pi-setup.sh --wheel FILE [--claim-code CODE --server-url URL] [options]

  --wheel FILE        the agent wheel built by `make dist` (dist/iot_suitcase-*.whl)
  --claim-code CODE   this Pi's claim code (printed under its QR code on the kit's card)
  --server-url URL    the IoT Suitcase server, e.g. https://suitcase.example.org
                      (both needed the first time; later runs keep the written config)
  --root DIR          write everything under DIR, print system commands instead of running them
  --pip-args ARGS     extra arguments for pip install (e.g. "--no-index --find-links /media/usb")
  -h, --help          show this help
EOF
}

ROOT=""
WHEEL=""
CLAIM_CODE=""
SERVER_URL=""
PIP_ARGS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --wheel) WHEEL="${2:?--wheel needs a file}"; shift 2 ;;
    --claim-code) CLAIM_CODE="${2:?--claim-code needs a code}"; shift 2 ;;
    --server-url) SERVER_URL="${2:?--server-url needs a URL}"; shift 2 ;;
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --pip-args) PIP_ARGS="${2?--pip-args needs arguments}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "pi-setup: unknown option $1: see --help" >&2; exit 2 ;;
  esac
done

fail() { echo "pi-setup: $*" >&2; exit 1; }
say() { echo "pi-setup: $*"; }

if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT="$(cd "$ROOT" && pwd)"
elif [ "$(id -u)" -ne 0 ]; then
  fail "run it as root: sudo bash $0 ... (or with --root DIR to try it out)"
fi

[ -n "$WHEEL" ] || fail "give the agent wheel with --wheel FILE (build it with \`make dist\`)"
[ -f "$WHEEL" ] || fail "no wheel at $WHEEL: copy dist/iot_suitcase-*.whl to the Pi first"
case "$(basename "$WHEEL")" in
  iot_suitcase-*.whl) ;;
  *) fail "$WHEEL is not an IoT Suitcase wheel (iot_suitcase-*.whl)" ;;
esac
if [ -n "$CLAIM_CODE" ] && ! [[ "$CLAIM_CODE" =~ ^[A-Za-z0-9_-]{4,64}$ ]]; then
  fail "claim code '$CLAIM_CODE' has characters a claim code never has: copy it again from the card"
fi
if [ -n "$SERVER_URL" ] && ! [[ "$SERVER_URL" =~ ^https?://[^[:space:]\"]+$ ]]; then
  fail "server URL '$SERVER_URL' must start with https:// (or http:// on a test network)"
fi

VENV=/opt/suitcase/venv
CONFIG=/etc/suitcase/edge.toml
UNIT=/etc/systemd/system/suitcase-edge.service
STATE=/var/lib/suitcase
AGENT_USER=suitcase

# Run a system command, or under --root only say what would run.
run() {
  if [ -n "$ROOT" ]; then
    echo "would run: $*"
  else
    "$@"
  fi
}

# Write stdin to a file (under ROOT) only when its content differs; report what happened.
# Sets CHANGED=1 when the file was written.
CHANGED=0
put() {
  local path="$1" mode="$2" target tmp
  target="$ROOT$path"
  mkdir -p "$(dirname "$target")"
  tmp="$(mktemp "$(dirname "$target")/.pi-setup.XXXXXX")"
  cat >"$tmp"
  chmod "$mode" "$tmp"
  if [ -f "$target" ] && cmp -s "$tmp" "$target"; then
    rm -f "$tmp"
    say "unchanged $path"
    CHANGED=0
  else
    mv -f "$tmp" "$target"
    say "wrote $path"
    CHANGED=1
  fi
}

# 1. I2C ------------------------------------------------------------------------------------
boot_config() {
  if [ -f "$ROOT/boot/firmware/config.txt" ] || [ ! -f "$ROOT/boot/config.txt" ]; then
    echo /boot/firmware/config.txt  # Raspberry Pi OS Bookworm and later
  else
    echo /boot/config.txt
  fi
}

enable_i2c() {
  local cfg
  cfg="$(boot_config)"
  if [ -z "$ROOT" ] && command -v raspi-config >/dev/null 2>&1; then
    raspi-config nonint do_i2c 0  # 0 means "enable"; it is idempotent
    say "I2C enabled (raspi-config)"
    return
  fi
  [ -n "$ROOT" ] && echo "would run: raspi-config nonint do_i2c 0"
  local target="$ROOT$cfg"
  mkdir -p "$(dirname "$target")"
  touch "$target"
  if grep -qx 'dtparam=i2c_arm=on' "$target"; then
    say "unchanged $cfg (i2c_arm=on)"
  else
    sed -i '/^dtparam=i2c_arm=/d' "$target"
    echo 'dtparam=i2c_arm=on' >>"$target"
    say "wrote $cfg (dtparam=i2c_arm=on; takes effect after a reboot)"
  fi
  local modules="$ROOT/etc/modules"
  mkdir -p "$(dirname "$modules")"
  touch "$modules"
  if grep -qx 'i2c-dev' "$modules"; then
    say "unchanged /etc/modules (i2c-dev)"
  else
    echo 'i2c-dev' >>"$modules"
    say "wrote /etc/modules (i2c-dev)"
  fi
}

# 2. user, packages and venv ------------------------------------------------------------------
install_packages() {
  if [ -z "$ROOT" ] && python3 -c 'import venv, ensurepip' 2>/dev/null && command -v i2cdetect >/dev/null 2>&1; then
    say "unchanged packages (python3-venv, i2c-tools)"
    return
  fi
  run apt-get update -qq
  run apt-get install -y -qq python3-venv i2c-tools
}

create_user() {
  if [ -z "$ROOT" ] && id -u "$AGENT_USER" >/dev/null 2>&1; then
    run usermod -a -G i2c "$AGENT_USER"
    say "unchanged user $AGENT_USER"
  else
    run useradd --system --home-dir "$STATE" --shell /usr/sbin/nologin --groups i2c "$AGENT_USER"
  fi
  mkdir -p "$ROOT$STATE/edge"
  run chown -R "$AGENT_USER:$AGENT_USER" "$STATE"
}

install_agent() {
  local venv="$ROOT$VENV" wanted installed
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    say "created venv $VENV"
  else
    say "unchanged venv $VENV"
  fi
  wanted="$(basename "$WHEEL" | cut -d- -f2)"
  installed="$("$venv/bin/python" -m pip show iot-suitcase 2>/dev/null | sed -n 's/^Version: //p' || true)"
  if [ "$installed" = "$wanted" ]; then
    say "unchanged agent $wanted in $VENV"
    return
  fi
  # the edge extra: the agent and its parts' drivers, not the server's or the demo's libraries
  # shellcheck disable=SC2086  # PIP_ARGS is a list of arguments on purpose
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $PIP_ARGS "${WHEEL}[edge]"
  say "installed agent $wanted in $VENV (was: ${installed:-none})"
}

# 3. agent config -----------------------------------------------------------------------------
write_config() {
  if [ -z "$CLAIM_CODE" ] && [ -z "$SERVER_URL" ]; then
    [ -f "$ROOT$CONFIG" ] || fail "no $CONFIG yet: give --claim-code and --server-url the first time"
    say "unchanged $CONFIG (no --claim-code given)"
    return
  fi
  if [ -z "$CLAIM_CODE" ] || [ -z "$SERVER_URL" ]; then
    fail "give both --claim-code and --server-url"
  fi
  put "$CONFIG" 640 <<EOF
# IoT Suitcase edge agent (format: edge/config.py), written by pi-setup.sh. Keep it secret: the
# claim code lets anyone who has it link this Pi to an organisation.
# The agent polls the server with the claim code until a staff member claims this Pi, then saves
# the device config it receives in state_dir (docs/architecture.md, "Enrollment").
state_dir = "$STATE/edge"

[claim]
server = "$SERVER_URL"
code = "$CLAIM_CODE"
EOF
  run chown "root:$AGENT_USER" "$CONFIG"
}

# 4. systemd service --------------------------------------------------------------------------
install_service() {
  put "$UNIT" 644 <<EOF
# IoT Suitcase edge agent, installed by pi-setup.sh.
[Unit]
Description=IoT Suitcase edge agent: read the sensors, publish over MQTT
Documentation=https://example.invalid/iot-suitcase
Wants=network-online.target time-sync.target
After=network-online.target time-sync.target

[Service]
User=$AGENT_USER
Group=$AGENT_USER
SupplementaryGroups=i2c
WorkingDirectory=$STATE
# The launcher (from this venv, never updated remotely) runs the agent version in $STATE/agent
# and rolls back an update that does not report healthy (docs/architecture.md, "Agent updates").
ExecStart=$VENV/bin/python -m edge.updates.launcher --home $STATE/agent -- edge run --config $CONFIG
Restart=always
RestartSec=5
NoNewPrivileges=yes
PrivateTmp=yes
ProtectHome=yes

[Install]
WantedBy=multi-user.target
EOF
  if [ "$CHANGED" = 1 ]; then
    run systemctl daemon-reload
  fi
  run systemctl enable suitcase-edge.service
  if [ "$CHANGED" = 1 ]; then
    run systemctl restart suitcase-edge.service
  else
    run systemctl start suitcase-edge.service
  fi
}

say "setting up${ROOT:+ under $ROOT}"
enable_i2c
install_packages
create_user
install_agent
write_config
install_service
say "done. The agent starts at every boot; see its log with: journalctl -u suitcase-edge -f"
