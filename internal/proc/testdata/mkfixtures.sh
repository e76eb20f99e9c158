#!/bin/sh
# Regenerates testdata/proc, a small procfs tree for the unit tests.
# Symbolic links (exe, cwd) are stored as such in git; they are only ever
# read with readlink, never followed, except cwd of pid 107 whose target is
# deliberately missing. Run from the proc package directory.
set -eu
R=testdata/proc
rm -rf "$R"
mkdir -p "$R"

# task PID NAME TGID PPID UID(r e s f) GID(r e s f) FLAGS POLICY STATE [STATUS_NAME]
task() {
	pid=$1 name=$2 tgid=$3 ppid=$4 uids=$5 gids=$6 flags=$7 policy=$8 state=$9
	sname=${10:-$name}
	d=$R/$pid
	mkdir -p "$d/task/$pid"
	printf 'Name:\t%s\nUmask:\t0022\nState:\t%s (sleeping)\nTgid:\t%s\nNgid:\t0\nPid:\t%s\nPPid:\t%s\nTracerPid:\t0\nUid:\t%s\nGid:\t%s\nFDSize:\t64\nGroups:\t \nThreads:\t1\n' \
		"$sname" "$state" "$tgid" "$pid" "$ppid" "$uids" "$gids" >"$d/status"
	# 52 fields; field 9 flags, field 40 rt_priority, field 41 policy.
	printf '%s (%s) %s %s %s %s 0 -1 %s 97 0 0 0 0 0 0 0 20 0 1 0 1149170 3133440 358 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 %s %s 0 0 0 0 0 0 0 0 0 0 0\n' \
		"$pid" "$name" "$state" "$ppid" "$pid" "$pid" "$flags" "$([ "$policy" = 0 ] && echo 0 || echo 10)" "$policy" >"$d/stat"
	printf '' >"$d/task/$pid/children"
	printf '12:pids:/user.slice\n2:cpu,cpuacct:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/user.slice/session-1.scope\n' >"$d/cgroup"
}
cmdline() { printf "%b" "$2" >"$R/$1/cmdline"; }

# 100: comm equals the exe's base name; two threads, children spread over both.
task 100 bash 100 1 '1000	1000	1000	1000' '1000	1000	1000	1000' 4194560 0 S
ln -s /usr/bin/bash $R/100/exe
ln -s /home/u $R/100/cwd
cmdline 100 '-bash\0'
mkdir -p $R/100/task/120
printf '101 102 ' >$R/100/task/100/children
printf '103 102 \n' >$R/100/task/120/children

# 101: a script: exe is the interpreter, comm the script's name.
task 101 run.py 101 100 '1000	0	0	0' '1000	1000	1000	1000' 4194560 0 S
ln -s /usr/bin/python3.12 $R/101/exe
ln -s /home/u $R/101/cwd
cmdline 101 '/usr/bin/python3\0/opt/x/run.py\0--flag\0'

# 102: a symlinked binary: exe is the link's target, comm and argv[0] the link.
task 102 python3 102 100 '0	0	0	0' '0	0	0	0' 4194560 0 S
ln -s /usr/bin/python3.12 $R/102/exe
ln -s /home/u $R/102/cwd
cmdline 102 '/usr/bin/python3\0-c\0pass\0'

# 104: a kernel thread: no exe, PF_KTHREAD, parent kthreadd.
task 104 'kworker/0:1-events' 104 2 '0	0	0	0' '0	0	0	0' 69238880 0 I 'kworker/0:1-events'
cmdline 104 ''

# 105: the executable was replaced/removed after exec.
task 105 daemon 105 1 '0	0	0	0' '0	0	0	0' 4194560 0 S
ln -s '/usr/local/bin/daemon (deleted)' $R/105/exe
ln -s / $R/105/cwd
cmdline 105 '/usr/local/bin/daemon\0'

# 106: comm truncated to 15 bytes.
task 106 verylongprogram 106 1 '0	0	0	0' '0	0	0	0' 4194560 0 S
ln -s /opt/bin/verylongprogramname $R/106/exe
cmdline 106 '/opt/bin/verylongprogramname\0'

# 107: relative argv[0] matching comm that does not exist under cwd:
# libcgroup's realpath fails and the name is the exe path.
task 107 python3 107 1 '0	0	0	0' '0	0	0	0' 4194560 0 S
ln -s /usr/bin/python3.12 $R/107/exe
ln -s /nonexistent-cgre-fixture-dir $R/107/cwd
cmdline 107 'python3\0x.py\0'

# 108: SCHED_FIFO task whose comm contains blanks and parentheses.
task 108 'rt (x) y' 108 1 '0	0	0	0' '0	0	0	0' 4194560 1 S
ln -s /usr/sbin/rtd $R/108/exe
cmdline 108 '/usr/sbin/rtd\0'

# 109: comm with a backslash, escaped by the kernel in status.
task 109 'a\b' 109 1 '0	0	0	0' '0	0	0	0' 4194560 2 S 'a\\b'
ln -s '/usr/bin/a\b' $R/109/exe
cmdline 109 '/usr/bin/a\\b\0'

# 110: a zombie: no exe, not a kernel thread.
task 110 defunct 110 100 '1000	1000	1000	1000' '1000	1000	1000	1000' 4227332 0 Z
cmdline 110 ''

# 111: comm matches no argument and not the exe: the name is exe.
task 111 worker 111 1 '0	0	0	0' '0	0	0	0' 4194560 0 S
ln -s /usr/bin/node $R/111/exe
cmdline 111 'node\0/srv/app.js\0'

# 120: a thread of 100, reachable by tid though hidden from readdir in a real procfs.
task 120 bash 100 1 '1000	1000	1000	1000' '1000	1000	1000	1000' 4194624 0 S
ln -s /usr/bin/bash $R/120/exe

# non-pid entries that PIDs must ignore
mkdir -p $R/sys $R/self-not-a-link
printf '' >$R/uptime
