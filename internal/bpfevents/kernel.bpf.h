/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The few kernel types events.bpf.c reads, declared with only the fields it
 * uses. preserve_access_index makes clang record every field access as a
 * CO-RE relocation, which the loader resolves against the running kernel's
 * BTF (/sys/kernel/btf/vmlinux): offsets may differ between kernel builds,
 * the names may not. (Not a generated vmlinux.h: that would tie the
 * committed object to the machine that generated it.)
 */
#ifndef CGRE_KERNEL_BPF_H
#define CGRE_KERNEL_BPF_H

typedef struct {
	unsigned int val;
} kuid_t;

typedef struct {
	unsigned int val;
} kgid_t;

struct cred {
	kuid_t uid;
	kgid_t gid;
	kuid_t suid;
	kgid_t sgid;
	kuid_t euid;
	kgid_t egid;
	kuid_t fsuid;
	kgid_t fsgid;
} __attribute__((preserve_access_index));

/* x86-64: the thread_info is the first member of task_struct. */
struct thread_info {
	unsigned int status;
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_info thread_info;
	int pid;
	int tgid;
	int exit_code;
	int exit_signal;
	char comm[16];
	struct task_struct *real_parent;
	const struct cred *real_cred;
	const struct cred *cred;
} __attribute__((preserve_access_index));

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct path {
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct inode {
	unsigned short i_mode;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct linux_binprm {
	struct file *executable;
	struct file *file;
	unsigned int per_clear;
} __attribute__((preserve_access_index));

struct pt_regs {
	unsigned long orig_ax;
} __attribute__((preserve_access_index));

#endif
