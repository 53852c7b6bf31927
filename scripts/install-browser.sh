#!/bin/sh
# Install the browser the web tests drive: Debian's chromium at /usr/bin/chromium.
#
# Idempotent: does nothing when /usr/bin/chromium is already there. Installs it with apt-get when this
# runs as root; otherwise prints how to install it and exits 0 (the browser tests then skip with that
# reason). It never downloads a browser build itself (no `playwright install`).
set -eu

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-browser: $CHROMIUM is missing; install it with: sudo apt-get install -y chromium" \
         "(the browser tests skip until then)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: $CHROMIUM is missing and apt-get is not available; install chromium with your" \
         "package manager (the browser tests skip until then)" >&2
    exit 0
fi
echo "install-browser: $CHROMIUM is missing; installing Debian's chromium and fonts-liberation with apt-get" \
     "as root (about 100 MB; the web tests drive it). Press Ctrl-C within 5 s to skip (the browser tests then skip)." >&2
sleep 5
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium fonts-liberation
if [ ! -x "$CHROMIUM" ]; then
    echo "install-browser: apt-get installed chromium but $CHROMIUM is still missing" >&2
    exit 1
fi
