// Package trust decides whether a file is under root's control alone, the
// way gLExec checks what it runs as root (its "trusted-root" path): the file
// is owned by root and not writable by group or others, and every directory
// on the way to it from "/", through every symbolic link, is owned by root
// and not writable by group or others, unless it is sticky (like /tmp: then
// others may add entries but not replace root's). A path that passes cannot
// be changed by anyone but root, so what the daemon reads (its rules) or
// appends to (its log) as root is what root meant.
//
// Privileges: none; the check only calls lstat(2) and readlink(2).
//
// Concurrency: Policy is a value with no state of its own; its methods are
// safe to call from any goroutine as long as its FS is (the real one is).
package trust
