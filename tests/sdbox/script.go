package sdbox

// insideScript runs as PID 1 of the box's new namespaces (unshare --fork)
// until it execs systemd. $1 is the box's host temporary directory: $1/mnt
// gets the tmpfs of the overlay, $1/sock is bind-mounted at /run/cgre-host,
// $1/units holds unit files for /etc/systemd/system; the other arguments
// are host directories to bind read-only at the same path (Options.Binds).
// Every mount is made in the box's private mount namespace.
const insideScript = `set -eu
T=$1
mount --make-rprivate /
mount -t tmpfs -o mode=0755 cgre-sdbox "$T/mnt"
mkdir "$T/mnt/upper" "$T/mnt/work" "$T/mnt/root"
mount -t overlay -o "lowerdir=/,upperdir=$T/mnt/upper,workdir=$T/mnt/work" cgre-sdbox "$T/mnt/root"
R=$T/mnt/root
mount -t proc proc "$R/proc"
# Kernel settings are not namespaced: systemd-sysctl, binfmt and friends
# must not reach the host's.
for p in sys sysrq-trigger; do
	if [ -e "$R/proc/$p" ]; then
		mount --bind "$R/proc/$p" "$R/proc/$p"
		mount -o remount,bind,ro "$R/proc/$p"
	fi
done
mount -t sysfs -o ro sysfs "$R/sys"
mount -t cgroup2 -o nsdelegate cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$R/dev"
mknod -m 666 "$R/dev/null" c 1 3
mknod -m 666 "$R/dev/zero" c 1 5
mknod -m 666 "$R/dev/full" c 1 7
mknod -m 666 "$R/dev/random" c 1 8
mknod -m 666 "$R/dev/urandom" c 1 9
mknod -m 666 "$R/dev/tty" c 5 0
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
: >"$R/dev/console"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
mkdir "$R/run/cgre-host"
mount --bind "$T/sock" "$R/run/cgre-host"
shift
for d in "$@"; do
	mkdir -p "$R$d"
	mount --bind "$d" "$R$d"
	mount -o remount,bind,ro "$R$d"
done
E=$R/etc/systemd/system
mkdir -p "$E/sockets.target.wants"
for u in timers.target modprobe@.service kmod-static-nodes.service \
	systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
	systemd-sysctl.service systemd-binfmt.service systemd-modules-load.service \
	systemd-pstore.service systemd-timesyncd.service systemd-random-seed.service \
	sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount \
	sys-fs-fuse-connections.mount dev-hugepages.mount; do
	ln -sf /dev/null "$E/$u"
done
cat >"$E/cgre-bus-proxy.socket" <<EOF
[Unit]
Description=cgre-sdbox: the manager's private socket, proxied for the host
[Socket]
ListenStream=/run/cgre-host/private
SocketMode=0600
EOF
cat >"$E/cgre-bus-proxy.service" <<EOF
[Unit]
Description=cgre-sdbox: the manager's private socket, proxied for the host
[Service]
ExecStart=/lib/systemd/systemd-socket-proxyd /run/systemd/private
EOF
ln -s ../cgre-bus-proxy.socket "$E/sockets.target.wants/cgre-bus-proxy.socket"
cp -a "$T/units/." "$E/"
mkdir "$R/.cgre-oldroot"
cd "$R"
pivot_root . .cgre-oldroot
cd /
umount -l /.cgre-oldroot
rmdir /.cgre-oldroot
mount --make-rshared /
exec env -i container=cgre-sdbox /lib/systemd/systemd --unit=basic.target
`
