#!/usr/bin/env bash
# Creates .venv with every pinned dependency and the three wsseg distributions (editable).
# Idempotent: re-running only installs what changed.  Called by `make setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# Open3D's wheel links libusb-1.0 (Debian package libusb-1.0-0).
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  echo "[setup] installing Debian package libusb-1.0-0 (needed by Open3D)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libusb-1.0-0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
echo "[setup] installing pinned dependencies (requirements.txt)"
$PIP install -q -r requirements.txt
echo "[setup] installing wsseg, wsseg-training, wsseg-export (editable)"
$PIP install -q --no-deps -e . -e training -e export
echo "[setup] done: $VENV"
