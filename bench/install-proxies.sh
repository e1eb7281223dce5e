#!/bin/sh
# Installs Debian's haproxy and nginx for `make bench` when they are
# missing, quietly, and makes sure neither runs as a system service: the
# harness starts its own instances with generated configurations on free
# loopback ports and stops them at the end. Idempotent.
set -eu

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=""
have haproxy || missing="$missing haproxy"
have nginx || missing="$missing nginx"

if [ -n "$missing" ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	echo "bench: installing$missing (apt-get)" >&2
	# Keep the packages' init scripts from starting the services during
	# the install (policy-rc.d exit 101: "action forbidden"), where no
	# policy is already in place.
	policy=/usr/sbin/policy-rc.d
	added_policy=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
		$SUDO chmod 755 "$policy"
		added_policy=1
	fi
	status=0
	log=$(mktemp)
	{
		$SUDO apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
	} >"$log" 2>&1 || status=$?
	[ -z "$added_policy" ] || $SUDO rm -f "$policy"
	if [ "$status" -ne 0 ]; then
		cat "$log" >&2
		rm -f "$log"
		echo "bench: apt-get install$missing failed ($status)" >&2
		exit "$status"
	fi
	rm -f "$log"
fi

# Whatever installed them, the system services must not run: stop and
# disable them where systemd or SysV init manages them.
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
for svc in haproxy nginx; do
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		$SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
	elif [ -x "/etc/init.d/$svc" ]; then
		$SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
	fi
done
