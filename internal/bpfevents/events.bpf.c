//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * The kernel half of the BPF event source: process events filtered in the
 * kernel, so that user space hears only what a rule may act on. See doc.go
 * for the design; in short:
 *
 *   credentials  a task's euid or egid changed and one of them is named by
 *                a rule (or a rule names everyone): a UID or GID event, and
 *                the process becomes "hot";
 *   exec         the new program's name (comm, or the base name of the file
 *                run) passes the rules' process-name prefilter, or the
 *                program the task leaves did (its comm): an EXEC event, and
 *                the process becomes hot;
 *   fork         the parent is hot and not yet settled by user space, or
 *                sticky with CGROUP_DAEMON_UNCHANGE_CHILDREN: a FORK event,
 *                and the child inherits the mark;
 *   exit         a process user space tracks (hot, sticky, or asked for)
 *                exits: an EXIT event, and its marks go.
 *
 * Every event goes through one ring buffer. An event that cannot be
 * reserved, or a mark that cannot be stored, is counted in counters.lost,
 * which user space reads (mmap) after each batch and turns into
 * kernel.EventOverflow: a rescan of /proc.
 *
 * Values of the event kinds are the proc connector's (kernel.What), so that
 * both sources produce the same kernel.Event.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "kernel.bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define EV_FORK 0x00000001
#define EV_EXEC 0x00000002
#define EV_UID 0x00000004
#define EV_GID 0x00000040
#define EV_EXIT 0x80000000
/* Not a kernel event: wakes the reader after a loss that emitted nothing. */
#define EV_LOST 0x10000000

#define TS_COMPAT 0x0002 /* thread_info.status: a 32-bit system call */
#define X32_SYSCALL_BIT 0x40000000
#define PER_CLEAR_ON_SETID 0x0740000 /* linux/personality.h */
#define S_ISUID 04000
#define S_ISGID 02000
#define S_IXGRP 00010

#define STICKY_CHILDREN 1 /* sticky.flags: children inherit the mark */
/*
 * sticky.flags: a mark made by a user other than root. A change of the
 * process's uids ends it (a set-user-ID program it ran), which user space
 * decides: its credential changes are reported as if it were not marked.
 */
#define STICKY_USER 2

/* One record of the ring buffer (decoded by event.go). */
struct event {
	__u32 what;
	__u32 cpu;
	__u64 timestamp; /* CLOCK_MONOTONIC ns, as the proc connector's */
	__s32 pid, tgid;
	__s32 ppid, ptgid;  /* FORK: the parent; EXIT: the real parent */
	__u32 rid, eid;     /* UID: ruid, euid; GID: rgid, egid */
	__u32 exit_code, exit_signal;
};

/*
 * Never read: keeps struct event in the object's BTF (the records are only
 * ever reached through pointers, which clang does not describe), for
 * bpf2go's Go declaration and the layout test.
 */
const volatile struct event event_layout = {};

/* Set by user space (mmap); read here. */
struct cgre_config {
	__u32 any_id;     /* report every credential change (a "*" rule) */
	__u32 execs;      /* 0: no EXEC events, 1: names in the prefilter, 2: all */
	__u64 fork_slack; /* ns: forks this long after a settle still count as before it */
	__u64 hot_ttl;    /* ns: an unsettled hot mark is followed this long */
};

/* Written here (atomically), read by user space (mmap). */
struct cgre_counters {
	__u64 lost;        /* events or marks lost: each one calls for a rescan */
	__u64 lost_ring;   /* ... of which the ring buffer was full */
	__u64 lost_marks;  /* ... of which a mark map was full */
	__u64 creds_seen;  /* credential changes seen (before the filter) */
	__u64 execs_seen;  /* execs seen (before the filter) */
};

/* Ids the hook on commit_creds saves at entry, compared at exit. */
struct ids {
	__u32 uid, euid, suid, fsuid;
	__u32 gid, egid, sgid, fsgid;
};

/* A user space settle (see on_fork). */
struct settle {
	__u64 as_of; /* the engine classified with everything up to this time */
	__u64 at;    /* and finished then */
};

/* LPM trie key: a process name's first 15 bytes, NUL padded. */
struct name_key {
	__u32 prefixlen;
	__u8 name[16];
};

/*
 * Sizes of the hash maps are set by the loader (Config); these are the
 * defaults the object carries. The hash maps allocate their elements as
 * they fill (BPF_F_NO_PREALLOC): an empty one costs its bucket array,
 * 16 bytes per entry it may hold.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct cgre_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct cgre_counters);
} counters SEC(".maps");

/* The ids rules name: euids (users, members of named groups), egids. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u8);
} uids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u8);
} gids SEC(".maps");

/* The process names exec rules name: exact (with their NUL) or prefixes. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct name_key);
	__type(value, __u8);
} names SEC(".maps");

/* Hot processes (tgid): the time their credentials changed or they were marked. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u64);
} hot SEC(".maps");

/* Settles of hot processes by user space (tgid). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct settle);
} settled SEC(".maps");

/* Sticky processes (tgid): flags, STICKY_CHILDREN or 0. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u32);
} sticky SEC(".maps");

/* Processes whose EXIT user space wants (tgid). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u8);
} exits SEC(".maps");

/*
 * Threads in an exec whose old program's name (comm) passed the prefilter
 * (thread id), from task_rename to sched_process_exec: a task that leaves a
 * program a rule named may belong elsewhere now. LRU: a rename outside an
 * exec (prctl PR_SET_NAME, /proc/PID/comm) leaves an entry that only the
 * thread's next exec or exit takes, and the oldest go first.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} leaving SEC(".maps");

/* Ids saved by the commit_creds entry hook (thread id). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct ids);
} pending SEC(".maps");

/*
 * Set by the loader: the commit_creds hooks are attached and report every
 * credential change, so the exec hook reports none (they would be doubles).
 */
const volatile __u32 commit_hook = 0;

static __always_inline struct cgre_config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

static __always_inline struct cgre_counters *get_counters(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&counters, &zero);
}

/*
 * lose counts a loss (ring: the ring buffer was full; else a map) and makes
 * sure the reader wakes to see it: a loss that emitted no event would
 * otherwise wait for the next one.
 */
static __always_inline void lose(int ring)
{
	struct cgre_counters *c = get_counters();
	if (c) {
		__sync_fetch_and_add(&c->lost, 1);
		if (ring)
			__sync_fetch_and_add(&c->lost_ring, 1);
		else
			__sync_fetch_and_add(&c->lost_marks, 1);
	}
	if (ring)
		return; /* the reader has a full ring to read */
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->what = EV_LOST;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline struct event *reserve(__u32 what, __u64 now)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		lose(1);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->what = what;
	e->cpu = bpf_get_smp_processor_id();
	e->timestamp = now;
	return e;
}

/* named reports whether a rule may match a task with these ids. */
static __always_inline int named(struct cgre_config *cfg, __u32 euid, __u32 egid)
{
	if (cfg->any_id)
		return 1;
	return bpf_map_lookup_elem(&uids, &euid) || bpf_map_lookup_elem(&gids, &egid);
}

static __always_inline void mark_hot(__u32 tgid, __u64 now)
{
	if (bpf_map_update_elem(&hot, &tgid, &now, BPF_ANY))
		lose(0);
}

/*
 * report_creds reports a credential change of task t (which is current) of
 * the kinds in what (EV_UID, EV_GID or both) when its new ids are named,
 * and marks the process hot.
 */
static __always_inline void report_creds(struct task_struct *t, __u32 what)
{
	struct cgre_config *cfg = get_config();
	struct cgre_counters *cnt = get_counters();
	if (!cfg || !cnt)
		return;
	__sync_fetch_and_add(&cnt->creds_seen, 1);
	__u32 tgid = t->tgid;
	__u32 *sf = bpf_map_lookup_elem(&sticky, &tgid);
	if (sf && !(*sf & STICKY_USER))
		return; /* a sticky process is left alone */
	const struct cred *cred = t->cred;
	__u32 euid = cred->euid.val, egid = cred->egid.val;
	if (!named(cfg, euid, egid))
		return;
	__u64 now = bpf_ktime_get_ns();
	/* The process is hot before the event is out: its forks are reported. */
	mark_hot(tgid, now);
	if (what & EV_UID) {
		struct event *e = reserve(EV_UID, now);
		if (e) {
			e->pid = t->pid;
			e->tgid = tgid;
			e->rid = cred->uid.val;
			e->eid = euid;
			bpf_ringbuf_submit(e, 0);
		}
	}
	if (what & EV_GID) {
		struct event *e = reserve(EV_GID, now);
		if (e) {
			e->pid = t->pid;
			e->tgid = tgid;
			e->rid = cred->gid.val;
			e->eid = egid;
			bpf_ringbuf_submit(e, 0);
		}
	}
}

/* The x86-64 set*id system calls: EV_UID or EV_GID, 0 for any other. */
static __always_inline __u32 native_setid(unsigned long id)
{
	switch (id) {
	case 105: /* setuid */
	case 113: /* setreuid */
	case 117: /* setresuid */
	case 122: /* setfsuid */
		return EV_UID;
	case 106: /* setgid */
	case 114: /* setregid */
	case 119: /* setresgid */
	case 123: /* setfsgid */
		return EV_GID;
	}
	return 0;
}

/* The i386 (compat) set*id system calls, 16-bit and 32-bit ids. */
static __always_inline __u32 ia32_setid(unsigned long id)
{
	switch (id) {
	case 23:  /* setuid (16-bit) */
	case 70:  /* setreuid */
	case 138: /* setfsuid */
	case 164: /* setresuid */
	case 203: /* setreuid32 */
	case 208: /* setresuid32 */
	case 213: /* setuid32 */
	case 215: /* setfsuid32 */
		return EV_UID;
	case 46:  /* setgid (16-bit) */
	case 71:  /* setregid */
	case 139: /* setfsgid */
	case 170: /* setresgid */
	case 204: /* setregid32 */
	case 210: /* setresgid32 */
	case 214: /* setgid32 */
	case 216: /* setfsgid32 */
		return EV_GID;
	}
	return 0;
}

/*
 * Every system call's return (raw tracepoint sys_exit), on kernels where
 * commit_creds cannot be hooked: a successful set*id call, native, x32 or
 * i386, reports the task's new ids. It runs for every system call on the
 * machine, so the common case (not a set*id call) returns after a range
 * check and a few compares. The per-call tracepoints (syscalls:sys_exit_*)
 * would not do: they ignore i386 system calls on x86-64.
 */
SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret)
{
	unsigned long id = regs->orig_ax;
	if ((id & ~(unsigned long)X32_SYSCALL_BIT) > 216)
		return 0;
	__u32 what = native_setid(id & ~(unsigned long)X32_SYSCALL_BIT);
	__u32 compat = ia32_setid(id);
	if (!what && !compat)
		return 0;
	struct task_struct *t = bpf_get_current_task_btf();
	if (t->thread_info.status & TS_COMPAT)
		what = compat;
	else if (id & X32_SYSCALL_BIT && !what)
		return 0;
	if (!what || ret < 0)
		return 0; /* set*fs*id return the old id, never an error */
	report_creds(t, what);
	return 0;
}

/* The commit_creds hooks (fentry/fexit), where the kernel allows them. */
SEC("fentry/commit_creds")
int BPF_PROG(on_commit_creds, struct cred *new)
{
	struct task_struct *t = bpf_get_current_task_btf();
	const struct cred *old = t->real_cred;
	struct ids ids = {
		.uid = old->uid.val, .euid = old->euid.val,
		.suid = old->suid.val, .fsuid = old->fsuid.val,
		.gid = old->gid.val, .egid = old->egid.val,
		.sgid = old->sgid.val, .fsgid = old->fsgid.val,
	};
	__u32 tid = t->pid;
	if (bpf_map_update_elem(&pending, &tid, &ids, BPF_ANY))
		lose(0);
	return 0;
}

SEC("fexit/commit_creds")
int BPF_PROG(on_commit_creds_exit, struct cred *new, int ret)
{
	struct task_struct *t = bpf_get_current_task_btf();
	__u32 tid = t->pid;
	struct ids *old = bpf_map_lookup_elem(&pending, &tid);
	if (!old)
		return 0;
	/* As proc_id_connector: any of the four ids of a kind changed. */
	__u32 what = 0;
	if (old->uid != new->uid.val || old->euid != new->euid.val ||
	    old->suid != new->suid.val || old->fsuid != new->fsuid.val)
		what |= EV_UID;
	if (old->gid != new->gid.val || old->egid != new->egid.val ||
	    old->sgid != new->sgid.val || old->fsgid != new->fsgid.val)
		what |= EV_GID;
	bpf_map_delete_elem(&pending, &tid);
	if (what)
		report_creds(t, what);
	return 0;
}

/* mode_of returns the mode of f, 0 for none. */
static __always_inline unsigned short mode_of(struct file *f)
{
	if (!f)
		return 0;
	return f->f_inode->i_mode;
}

/* name_matches looks a 16-byte, NUL-padded name up in the prefilter. */
static __always_inline int name_matches(const char *name)
{
	struct name_key k = {.prefixlen = 128};
	__builtin_memcpy(k.name, name, sizeof(k.name));
	k.name[15] = 0;
	return bpf_map_lookup_elem(&names, &k) != 0;
}

/*
 * A task's comm changes: in an exec (begin_new_exec, after the new program
 * is committed and before sched_process_exec), or by prctl or
 * /proc/PID/comm. Here the comm is still the old one.
 */
SEC("tp_btf/task_rename")
int BPF_PROG(on_rename, struct task_struct *task, const char *comm)
{
	struct cgre_config *cfg = get_config();
	if (!cfg || cfg->execs != 1)
		return 0; /* no exec, or every exec, is reported anyway */
	char old[16];
	__builtin_memcpy(old, task->comm, sizeof(old));
	if (!name_matches(old))
		return 0;
	__u32 tid = task->pid;
	__u8 one = 1;
	bpf_map_update_elem(&leaving, &tid, &one, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, int old_pid, struct linux_binprm *bprm)
{
	struct cgre_config *cfg = get_config();
	struct cgre_counters *cnt = get_counters();
	if (!cfg || !cnt)
		return 0;
	__sync_fetch_and_add(&cnt->execs_seen, 1);
	__u32 tgid = p->tgid;
	__u32 *sf = bpf_map_lookup_elem(&sticky, &tgid);
	if (sf && !(*sf & STICKY_USER))
		return 0;
	/*
	 * A set-user-ID or set-group-ID program changed the ids: the kernel
	 * sets PER_CLEAR_ON_SETID whenever it applies such a bit (and when the
	 * program gains capabilities). Which bit: the mode of the file whose
	 * creds apply (the program, or for binfmt_misc's C flag the executable).
	 */
	if (!commit_hook && (bprm->per_clear & PER_CLEAR_ON_SETID)) {
		unsigned short mode = mode_of(bprm->file);
		if (bpf_core_field_exists(bprm->executable))
			mode |= mode_of(bprm->executable);
		__u32 what = 0;
		if (mode & S_ISUID)
			what |= EV_UID;
		if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
			what |= EV_GID;
		if (what)
			report_creds(p, what);
	}
	if (sf || !cfg->execs)
		return 0; /* a user's mark: only its credential changes */
	if (cfg->execs == 1) {
		/* The program the task leaves was named (on_rename). */
		__u32 tid = p->pid;
		int match = 0;
		if (bpf_map_lookup_elem(&leaving, &tid)) {
			bpf_map_delete_elem(&leaving, &tid);
			match = 1;
		}
		char comm[16];
		__builtin_memcpy(comm, p->comm, sizeof(comm));
		if (!match)
			match = name_matches(comm);
		if (!match) {
			/* The program run: for a script, the interpreter. */
			char base[16] = {};
			const unsigned char *n = bprm->file->f_path.dentry->d_name.name;
			bpf_probe_read_kernel_str(base, sizeof(base), n);
			match = name_matches(base);
		}
		if (!match)
			return 0;
	}
	__u64 now = bpf_ktime_get_ns();
	mark_hot(tgid, now);
	struct event *e = reserve(EV_EXEC, now);
	if (!e)
		return 0;
	e->pid = p->pid;
	e->tgid = tgid;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/*
 * follows reports whether a fork of hot process tgid at now is one user
 * space needs: the process is not settled since its latest credential
 * change or mark (for hot_ttl at most: a backstop for a mark user space
 * never settles), or the fork came before the settle (plus the slack).
 */
static __always_inline int follows(struct cgre_config *cfg, __u32 tgid, __u64 changed, __u64 now)
{
	struct settle *s = bpf_map_lookup_elem(&settled, &tgid);
	if (!s || s->as_of < changed)
		return (__s64)(now - changed) <= (__s64)cfg->hot_ttl;
	return now <= s->at + cfg->fork_slack;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ctgid = child->tgid;
	if (child->pid != (int)ctgid)
		return 0; /* a thread: it is moved with its process */
	struct cgre_config *cfg = get_config();
	if (!cfg)
		return 0;
	__u32 ptgid = parent->tgid;
	__u64 now = bpf_ktime_get_ns();
	int report = 0;

	__u64 *h = bpf_map_lookup_elem(&hot, &ptgid);
	if (h && follows(cfg, ptgid, *h, now)) {
		report = 1;
		if (bpf_map_update_elem(&hot, &ctgid, &now, BPF_ANY))
			lose(0);
	} else if (bpf_map_lookup_elem(&hot, &ctgid)) {
		/* A stale mark of a process that had this pid before. */
		bpf_map_delete_elem(&hot, &ctgid);
	}
	__u32 *s = bpf_map_lookup_elem(&sticky, &ptgid);
	if (s && (*s & STICKY_CHILDREN)) {
		__u32 flags = *s;
		report = 1;
		if (bpf_map_update_elem(&sticky, &ctgid, &flags, BPF_ANY))
			lose(0);
	} else if (bpf_map_lookup_elem(&sticky, &ctgid)) {
		bpf_map_delete_elem(&sticky, &ctgid);
	}
	if (bpf_map_lookup_elem(&settled, &ctgid))
		bpf_map_delete_elem(&settled, &ctgid);
	if (bpf_map_lookup_elem(&exits, &ctgid))
		bpf_map_delete_elem(&exits, &ctgid);
	if (!report)
		return 0;
	struct event *e = reserve(EV_FORK, now);
	if (!e)
		return 0;
	e->ppid = parent->pid;
	e->ptgid = ptgid;
	e->pid = child->pid;
	e->tgid = ctgid;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	__u32 tid = p->pid, tgid = p->tgid;
	if (bpf_map_lookup_elem(&leaving, &tid))
		bpf_map_delete_elem(&leaving, &tid);
	if (tid != tgid)
		return 0; /* a thread; the process's marks go with its leader */
	int tracked = 0;
	if (bpf_map_lookup_elem(&hot, &tgid)) {
		bpf_map_delete_elem(&hot, &tgid);
		tracked = 1;
	}
	if (bpf_map_lookup_elem(&sticky, &tgid)) {
		bpf_map_delete_elem(&sticky, &tgid);
		tracked = 1;
	}
	if (bpf_map_lookup_elem(&exits, &tgid)) {
		bpf_map_delete_elem(&exits, &tgid);
		tracked = 1;
	}
	if (bpf_map_lookup_elem(&settled, &tgid))
		bpf_map_delete_elem(&settled, &tgid);
	if (!tracked)
		return 0;
	struct event *e = reserve(EV_EXIT, bpf_ktime_get_ns());
	if (!e)
		return 0;
	e->pid = p->pid;
	e->tgid = tgid;
	e->exit_code = p->exit_code;
	e->exit_signal = p->exit_signal;
	struct task_struct *parent = p->real_parent;
	if (parent) {
		e->ppid = parent->pid;
		e->ptgid = parent->tgid;
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}
