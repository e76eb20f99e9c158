#!/bin/sh
# Runs the daemon in the foreground on a safe demo configuration: every
# hierarchy gets a demo subtree, and --cgroup-root confines the daemon to it,
# so it can only move tasks that were put inside the subtree on purpose.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/bin"
demo=/cgrulesengd-demo
state=$(mktemp -d /tmp/cgrulesengd-demo.XXXXXX)

if [ "$(id -u)" != 0 ]; then
	echo "make run: the daemon needs root (netlink proc connector, cgroup writes)" >&2
	exit 1
fi

# Every cgroup mount (v1 controllers, the v2 unified hierarchy).
mounts=$(awk '$9 == "cgroup" || $9 == "cgroup2" { print $5 }' /proc/self/mountinfo | sort -u)
for m in $mounts; do
	mkdir -p "$m$demo"
done

cat > "$state/cgrules.conf" <<RULES
# Demo rules: only tasks inside $demo are ever touched.
nobody:sleep   *   sleepers
nobody         *   users/%u
*              *   others
RULES
chmod 0644 "$state/cgrules.conf"
for m in $mounts; do mkdir -p "$m$demo/sleepers" "$m$demo/others"; done

cleanup() {
	for m in $mounts; do
		find "$m$demo" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	rm -rf "$state"
}
trap cleanup EXIT INT TERM

first=$(echo "$mounts" | head -n1)
cat <<INFO
Demo: rules in $state/cgrules.conf, daemon confined to $demo in:
$(echo "$mounts" | sed 's/^/  /')

In another terminal, start a task inside the demo subtree that becomes
user nobody, then look where it went:

  sudo sh -c 'for m in $(echo $mounts); do echo \$\$ > \$m$demo/cgroup.procs; done; exec $bin/setuid -u nobody'
  cat /proc/<PID it printed>/cgroup          # ...:$demo/users/nobody
  sudo sh -c 'for m in $(echo $mounts); do echo \$\$ > \$m$demo/cgroup.procs; done; exec $bin/setuid -u nobody -exec /bin/sleep 600'
                                              # ...:$demo/sleepers
Edit $state/cgrules.conf to see it reload. Ctrl-C stops the daemon.

INFO
# The sticky socket goes to the demo's own directory: the demo must not take
# /var/run/cgred.socket from a rules daemon that may run here (cgexec and
# cgclassify --sticky reach only the daemon on that path).
"$bin/cgrulesengd" -d --config "$state/cgrules.conf" --config-dir "$state/cgrules.d" --cgroup-root "$demo" --socket "$state/cgred.socket" || true
