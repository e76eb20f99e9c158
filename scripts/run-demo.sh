#!/bin/sh
# Runs the daemon in the foreground on a safe demo configuration: every
# hierarchy gets a demo subtree, and --cgroup-root confines the daemon to it,
# so it can only move tasks that were put inside the subtree on purpose.
# CGRE_DEMO_BIN names the directory of cgrulesengd and setuid (default bin/);
# CGRE_DEMO_OPTIONS holds more options of the daemon (the tests' --events).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${CGRE_DEMO_BIN:-$here/bin}
demo=/cgrulesengd-demo
state=$(mktemp -d /tmp/cgrulesengd-demo.XXXXXX)

if [ "$(id -u)" != 0 ]; then
	echo "make run: the daemon needs root (netlink proc connector, cgroup writes)" >&2
	exit 1
fi

# Every cgroup mount (v1 controllers, name=systemd, the v2 unified
# hierarchy) as "TYPE MOUNTPOINT OPTIONS". The file system type is the field
# after the "-" that ends the optional fields, whose number varies.
mounts=$(awk '{ for (i = 7; i <= NF && $i != "-"; i++); if ($(i+1) == "cgroup" || $(i+1) == "cgroup2") print $(i+1), $5, $(i+3) }' /proc/self/mountinfo | sort -u -k2,2)
dirs=$(echo "$mounts" | awk '{ print $2 }')

# mkcg DIR: create a cgroup. A v1 cpuset cgroup starts with no cpus and no
# memory nodes, and no task can join it until it has both: give it its
# parent's.
mkcg() {
	mkdir -p "$1"
	if [ -f "$1/cpuset.cpus" ] && [ -f "$(dirname "$1")/cpuset.cpus" ] && [ -z "$(cat "$1/cpuset.cpus")" ]; then
		cat "$(dirname "$1")/cpuset.cpus" > "$1/cpuset.cpus"
		cat "$(dirname "$1")/cpuset.mems" > "$1/cpuset.mems"
	fi
}

# Tasks are started in $demo/start, a leaf: on cgroup v2 a cgroup that
# enables controllers for its children (the daemon does, for users/%u) must
# not hold tasks itself.
for m in $dirs; do
	for d in "" /start /sleepers /others; do
		mkcg "$m$demo$d"
	done
done

# "*" means every resource controller; a named hierarchy (name=systemd, v1
# only) is listed on a "%" line of its own so that tasks move there too.
named=$(echo "$mounts" | awk '$1 == "cgroup" { n = split($3, o, ","); for (i = 1; i <= n; i++) if (o[i] ~ /^name=/) print o[i] }' | sort -u)
also() {
	for n in $named; do
		printf '%%              %-7s %s\n' "$n" "$1"
	done
}
{
	echo "# Demo rules: only tasks inside $demo are ever touched."
	echo "nobody:sleep   *       sleepers"
	also sleepers
	echo "nobody         *       users/%u"
	also users/%u
	echo "*              *       others"
	also others
} > "$state/cgrules.conf"
chmod 0644 "$state/cgrules.conf"

cleanup() {
	for m in $dirs; do
		find "$m$demo" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	rm -rf "$state"
}
trap cleanup EXIT INT TERM

sudo=""
if command -v sudo >/dev/null 2>&1; then sudo="sudo "; fi
join=$(for m in $dirs; do printf '%s ' "$m"; done)
cat <<INFO
Demo: rules in $state/cgrules.conf, daemon confined to $demo in:
$(echo "$dirs" | sed 's/^/  /')

In another terminal, start a task inside the demo subtree that becomes
user nobody, then look where it went:

  ${sudo}sh -c 'for m in ${join% }; do echo \$\$ > \$m$demo/start/cgroup.procs; done; exec $bin/setuid -u nobody'
  cat /proc/<PID it printed>/cgroup          # every line ends in $demo/users/nobody
  ${sudo}sh -c 'for m in ${join% }; do echo \$\$ > \$m$demo/start/cgroup.procs; done; exec $bin/setuid -u nobody -exec /bin/sleep 600'
                                              # every line ends in $demo/sleepers
  ${sudo}kill <PID>                           # when done
  ${sudo}$bin/cgrulesengd --status --status-socket $state/status.sock
                                              # what the daemon did: moves, rules by hits
Edit $state/cgrules.conf to see it reload. Ctrl-C stops the daemon.

INFO
# The sticky and status sockets go to the demo's own directory: the demo
# must not take /var/run/cgred.socket or /run/cgrulesengd.sock from a rules
# daemon that may run here (cgexec and cgclassify --sticky reach only the
# daemon on that path, and a plain --status asks the one on the other).
"$bin/cgrulesengd" -d --config "$state/cgrules.conf" --config-dir "$state/cgrules.d" --cgroup-root "$demo" \
	--socket "$state/cgred.socket" --status-socket "$state/status.sock" ${CGRE_DEMO_OPTIONS:-} || true
