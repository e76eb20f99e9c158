#!/usr/bin/python3
"""Refuse one bpf(2) command with EPERM, then exec a program.

Used by TestEventsFallback to make the kernel refuse the BPF event source's
programs as kernel lockdown or a security module would: bpf(BPF_PROG_LOAD)
fails with EPERM, every other system call (and bpf command) is allowed.

Usage: refuse_bpf.py CMD -- PROGRAM ARGS...    (CMD: 5 = BPF_PROG_LOAD)
Needs no_new_privs or CAP_SYS_ADMIN.
"""
import errno
import os
import sys

from seccomp import ALLOW, ERRNO, Arg, EQ, SyscallFilter


def main(argv):
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: refuse_bpf.py CMD -- PROGRAM ARGS...")
    f = SyscallFilter(defaction=ALLOW)
    f.add_rule(ERRNO(errno.EPERM), "bpf", Arg(0, EQ, int(argv[0])))
    f.load()
    os.execv(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
