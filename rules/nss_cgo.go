//go:build cgo

package rules

/*
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>
*/
import "C"

import (
	"fmt"
	"syscall"
	"unsafe"
)

// Users and groups are looked up with getpw*_r and getgr*_r directly, not
// with os/user: os/user formats the C library's errno into its error text
// (%v), so a look-up that failed for lack of descriptors (EMFILE, ENFILE:
// NSS opens /etc/passwd, or a socket to sssd or nscd, for each one) could
// not be told from any other failure, and the engine could not treat it
// as the lost event it is. Here the errno is kept (errors.Is works).

// firstUserBuf, when not 0, replaces the first buffer size (tests).
var firstUserBuf = 0

func lookupUser(name string) (User, error) {
	if badName(name) {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	u, err := getpw(func(pwd *C.struct_passwd, buf *C.char, n C.size_t, res **C.struct_passwd) C.int {
		return C.getpwnam_r(cname, pwd, buf, n, res)
	})
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w", name, err)
	}
	return u, nil
}

func lookupUserID(uid uint32) (User, error) {
	u, err := getpw(func(pwd *C.struct_passwd, buf *C.char, n C.size_t, res **C.struct_passwd) C.int {
		return C.getpwuid_r(C.uid_t(uid), pwd, buf, n, res)
	})
	if err != nil {
		return User{}, fmt.Errorf("uid %d: %w", uid, err)
	}
	return u, nil
}

// getpw runs one getpw*_r call and copies the entry into Go memory.
func getpw(call func(*C.struct_passwd, *C.char, C.size_t, **C.struct_passwd) C.int) (User, error) {
	size := C.size_t(1024)
	if n := C.sysconf(C._SC_GETPW_R_SIZE_MAX); n > 0 && C.size_t(n) > size {
		size = C.size_t(n)
	}
	if firstUserBuf > 0 {
		size = C.size_t(firstUserBuf)
	}
	var pwd C.struct_passwd
	return getEntry(size, func(buf *C.char, n C.size_t) (C.int, bool) {
		var res *C.struct_passwd
		rc := call(&pwd, buf, n, &res)
		return rc, res != nil
	}, func() User {
		return User{Name: C.GoString(pwd.pw_name), UID: uint32(pwd.pw_uid), GID: uint32(pwd.pw_gid)}
	})
}

// getEntry runs a get*_r call with a buffer of size bytes, doubling it
// while the call reports ERANGE (up to maxGroupBuf), and returns what
// build makes of the entry while the buffer is still there; a missing
// entry is ErrNotFound, any other failure its errno.
func getEntry[T any](size C.size_t, call func(buf *C.char, n C.size_t) (rc C.int, found bool), build func() T) (T, error) {
	var zero T
	for {
		buf := C.malloc(size)
		if buf == nil {
			return zero, syscall.ENOMEM
		}
		rc, found := call((*C.char)(buf), size)
		if rc == C.ERANGE && size < maxGroupBuf {
			C.free(buf)
			size *= 2
			continue
		}
		defer C.free(buf)
		switch {
		case rc == 0 && !found, notFound(rc):
			return zero, ErrNotFound
		case rc != 0:
			return zero, syscall.Errno(rc)
		}
		return build(), nil
	}
}

// notFound reports the errors getpw*_r(3) and getgr*_r(3) may return for
// "no such entry", depending on the NSS module.
func notFound(rc C.int) bool {
	return rc == C.ENOENT || rc == C.ESRCH || rc == C.EBADF || rc == C.EPERM
}

// maxGroupBuf bounds the buffer getgr*_r may ask for: a group with tens of
// thousands of members needs a few megabytes, nothing legitimate needs more.
const maxGroupBuf = 64 << 20

// firstGroupBuf, when not 0, replaces the first buffer size (tests use a
// tiny one to exercise the ERANGE path).
var firstGroupBuf = 0

func lookupGroup(name string) (Group, error) {
	if badName(name) {
		return Group{}, fmt.Errorf("group %q: %w", name, ErrNotFound)
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	g, err := getgr(func(grp *C.struct_group, buf *C.char, n C.size_t, res **C.struct_group) C.int {
		return C.getgrnam_r(cname, grp, buf, n, res)
	})
	if err != nil {
		return Group{}, fmt.Errorf("group %q: %w", name, err)
	}
	return g, nil
}

func lookupGroupID(gid uint32) (Group, error) {
	g, err := getgr(func(grp *C.struct_group, buf *C.char, n C.size_t, res **C.struct_group) C.int {
		return C.getgrgid_r(C.gid_t(gid), grp, buf, n, res)
	})
	if err != nil {
		return Group{}, fmt.Errorf("gid %d: %w", gid, err)
	}
	return g, nil
}

// getgr runs one getgr*_r call and copies the entry into Go memory.
func getgr(call func(*C.struct_group, *C.char, C.size_t, **C.struct_group) C.int) (Group, error) {
	size := C.size_t(4096)
	if n := C.sysconf(C._SC_GETGR_R_SIZE_MAX); n > 0 && C.size_t(n) > size {
		size = C.size_t(n)
	}
	if firstGroupBuf > 0 {
		size = C.size_t(firstGroupBuf)
	}
	var grp C.struct_group
	return getEntry(size, func(buf *C.char, n C.size_t) (C.int, bool) {
		var res *C.struct_group
		rc := call(&grp, buf, n, &res)
		return rc, res != nil
	}, func() Group {
		g := Group{Name: C.GoString(grp.gr_name), GID: uint32(grp.gr_gid)}
		for p := grp.gr_mem; p != nil && *p != nil; p = (**C.char)(unsafe.Add(unsafe.Pointer(p), unsafe.Sizeof(*p))) {
			g.Members = append(g.Members, C.GoString(*p))
		}
		return g
	})
}
