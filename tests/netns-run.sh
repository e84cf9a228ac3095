#!/usr/bin/env bash
# Run a command inside a private network namespace when this machine allows it (root and
# unshare), so that nothing a test does can reach a real network. Inside: lo up, plus a veth pair
# with 10.254.0.1/24 and 10.254.0.2/24, because aioice never gathers loopback addresses and
# aiortc needs a host candidate to connect two peers. Where the namespace cannot be made, the
# command runs on the host's own addresses.
set -euo pipefail

if [ "${LIBERATION_NO_NETNS:-0}" != "1" ] && [ "$(id -u)" = "0" ] \
	&& command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 \
	&& unshare --net true 2>/dev/null; then
	exec unshare --net -- bash -c '
		set -euo pipefail
		ip link set lo up
		ip link set lo multicast on
		ip link add lnt0 type veth peer name lnt1
		ip addr add 10.254.0.1/24 dev lnt0
		ip addr add 10.254.0.2/24 dev lnt1
		ip link set lnt0 up
		ip link set lnt1 up
		ip route add 224.0.0.0/4 dev lo
		export LIBERATION_TEST_NETNS=1
		exec "$@"
	' netns-run "$@"
fi
echo "netns-run: no private network namespace (needs root and unshare); running on the host" >&2
exec "$@"
