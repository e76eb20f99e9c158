#!/usr/bin/python3
"""Apply the seccomp side of a systemd unit's hardening, then exec a program.

Used by the end-to-end test of init/cgred.service (TestUnitHardening), since
systemd is not PID 1 on the test machines: the same restrictions systemd
builds with libseccomp for SystemCallFilter=, SystemCallErrorNumber=,
RestrictAddressFamilies=, MemoryDenyWriteExecute=, LockPersonality=,
RestrictNamespaces=, RestrictSUIDSGID=, RestrictRealtime= and
SystemCallArchitectures=native, built here with libseccomp's Python binding.

Usage: seccomp_exec.py [--allow SYS,...] [--errno N] [--af N,...] [--mdwe]
                       [--lock-personality] [--restrict-ns] [--restrict-suid]
                       [--restrict-rt] [--native] -- PROGRAM ARGS...
Needs no_new_privs (setpriv --no-new-privs) or CAP_SYS_ADMIN.
"""
import os
import sys

import seccomp
from seccomp import ALLOW, ERRNO, Arg, EQ, MASKED_EQ, SyscallFilter

PROT_WRITE, PROT_EXEC = 0x2, 0x4
SHM_EXEC = 0o100000
NS_FLAGS = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 |
            0x10000000 | 0x20000000 | 0x40000000 | 0x00000080)
S_ISUID_GID = 0o6000
ENOSYS = 38


def main(argv):
    opts = {"allow": None, "errno": "1", "af": None}
    flags = set()
    i = 0
    while i < len(argv) and argv[i] != "--":
        a = argv[i]
        if a in ("--allow", "--errno", "--af"):
            opts[a[2:]] = argv[i + 1]
            i += 2
            continue
        flags.add(a[2:])
        i += 1
    prog = argv[i + 1:]
    if not prog:
        sys.exit("seccomp_exec.py: no program")

    if opts["allow"] is None:
        sys.exit("seccomp_exec.py: --allow is required (the unit's SystemCallFilter=)")
    # Only the native architecture is added to the filter: system calls of
    # another ABI get libseccomp's bad-architecture action (kill), as with
    # SystemCallArchitectures=native.
    f = SyscallFilter(defaction=ERRNO(int(opts["errno"])))
    allowed = set(s for s in opts["allow"].split(",") if s)

    # System calls that the other settings allow only with some arguments;
    # None: refused with ENOSYS (its flags cannot be inspected).
    conditional = {}

    def cond(name, *rules):
        conditional.setdefault(name, []).extend(rules)

    if opts["af"] is not None:
        conditional["socket"] = [[Arg(0, EQ, int(fam))] for fam in opts["af"].split(",")]
    if "mdwe" in flags:
        for v in (0, PROT_WRITE, PROT_EXEC):
            cond("mmap", [Arg(2, MASKED_EQ, PROT_WRITE | PROT_EXEC, v)])
        cond("mprotect", [Arg(2, MASKED_EQ, PROT_EXEC, 0)])
        cond("pkey_mprotect", [Arg(2, MASKED_EQ, PROT_EXEC, 0)])
        cond("shmat", [Arg(2, MASKED_EQ, SHM_EXEC, 0)])
    if "lock-personality" in flags:
        cond("personality", [Arg(0, EQ, 0)], [Arg(0, EQ, 0xffffffff)])
    if "restrict-ns" in flags:
        cond("unshare", [Arg(0, MASKED_EQ, NS_FLAGS, 0)])
        cond("clone", [Arg(0, MASKED_EQ, NS_FLAGS, 0)])
        conditional["setns"] = []
        conditional["clone3"] = None
    if "restrict-suid" in flags:
        cond("chmod", [Arg(1, MASKED_EQ, S_ISUID_GID, 0)])
        cond("fchmod", [Arg(1, MASKED_EQ, S_ISUID_GID, 0)])
        cond("fchmodat", [Arg(2, MASKED_EQ, S_ISUID_GID, 0)])
    if "restrict-rt" in flags:
        for p in (0, 3, 5):  # SCHED_OTHER, SCHED_BATCH, SCHED_IDLE
            cond("sched_setscheduler", [Arg(1, EQ, p)])

    for name in sorted(allowed):
        try:
            nr = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
        except (ValueError, RuntimeError):
            continue
        if nr < 0:
            continue  # not a system call of this architecture
        if name not in conditional:
            f.add_rule(ALLOW, name)
        elif conditional[name] is None:
            f.add_rule(ERRNO(ENOSYS), name)
        else:
            for r in conditional[name]:
                f.add_rule(ALLOW, name, *r)
    f.load()
    os.execv(prog[0], prog)


if __name__ == "__main__":
    main(sys.argv[1:])
