#!/bin/sh
# Installs Debian's chromium for the status page's browser test
# (cmd/quaestor/internal/admin/page_test.go) unless it is already there.
# Idempotent and quiet; uses sudo when not run as root.
set -eu

# The places the test looks, in its order.
if [ -x /usr/bin/chromium ]; then
	exit 0
fi
for name in chromium chromium-browser google-chrome; do
	if command -v "$name" >/dev/null 2>&1; then
		exit 0
	fi
done
if ! command -v apt-get >/dev/null 2>&1; then
	echo "ensure-chromium: no apt-get here; install chromium (or chrome) by hand" >&2
	exit 1
fi
sudo=
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "ensure-chromium: not root and no sudo; run as root: apt-get install chromium" >&2
		exit 1
	fi
	sudo=sudo
fi
# apt's chatter is shown only when it fails.
if ! out=$($sudo apt-get update -qq 2>&1 &&
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium 2>&1); then
	printf '%s\n' "$out" >&2
	echo "ensure-chromium: installing chromium failed" >&2
	exit 1
fi
