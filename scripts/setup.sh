#!/usr/bin/env bash
# Creates .venv with every pinned dependency and the three wsseg distributions (editable).
# Idempotent: re-running only installs what changed.  Called by `make setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# Debian packages: libusb-1.0-0 (Open3D's wheel links it); chromium (the real browser that the tests of
# `wsseg annotate` drive through Playwright -- Playwright's own browser download is not used); npm (installs
# the pinned three.js of the annotation page).
APT_PACKAGES=()
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || APT_PACKAGES+=(libusb-1.0-0)
[ -x /usr/bin/chromium ] || APT_PACKAGES+=(chromium)
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(npm)
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${APT_PACKAGES[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_PACKAGES[@]}"
fi

# three.js for `wsseg annotate`, exactly as package-lock.json pins it (served as ES modules, nothing built).
WEB=training/wsseg_training/annotate/web
if [ ! -f "$WEB/node_modules/three/package.json" ] || [ "$WEB/package-lock.json" -nt "$WEB/node_modules/.package-lock.json" ]; then
  echo "[setup] installing three.js for the annotation tool (npm ci in $WEB)"
  (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error)
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
