#!/usr/bin/env bash
# Make sure a headless Chromium is available for the browser tests (tests/browser/).
#
# Installs Debian's `chromium` package with apt-get where it is missing and that is permitted
# (root, apt-get present, LIBERATION_NO_APT unset). Quiet and idempotent. It never fails the
# build: when it cannot install, it says why and exits 0, and the browser tests skip themselves.
# Run it before pytest and outside the test network namespace (apt needs the package registry).
set -u

say() { echo "ensure-chromium: $*" >&2; }

for candidate in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
	if [ -n "$candidate" ] && [ -x "$candidate" ]; then
		exit 0
	fi
done

if [ "${LIBERATION_NO_APT:-0}" = "1" ]; then
	say "chromium not found and LIBERATION_NO_APT=1: the browser tests will be skipped"
	exit 0
fi
if [ "$(id -u)" != "0" ]; then
	say "chromium not found and not root (cannot apt-get install): the browser tests will be skipped"
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	say "chromium not found and no apt-get on this machine: the browser tests will be skipped"
	exit 0
fi

say "installing Debian's chromium package (once)"
export DEBIAN_FRONTEND=noninteractive
# Bounded: a registry that does not answer must not hang the build.
bound=()
if command -v timeout >/dev/null 2>&1; then
	bound=(timeout 900)
fi
apt=("${bound[@]}" apt-get -o DPkg::Lock::Timeout=120)
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! "${apt[@]}" install -y -qq --no-install-recommends chromium >"$log" 2>&1; then
	# The package lists may be missing or stale on a fresh machine: update once and retry.
	if ! { "${apt[@]}" update -qq && "${apt[@]}" install -y -qq --no-install-recommends chromium; } \
		>"$log" 2>&1; then
		say "apt-get could not install chromium (the browser tests will be skipped):"
		tail -n 5 "$log" >&2
		exit 0
	fi
fi
if [ -x /usr/bin/chromium ]; then
	say "chromium installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
else
	say "apt-get finished but /usr/bin/chromium is missing: the browser tests will be skipped"
fi
exit 0
