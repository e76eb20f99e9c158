package proc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bufSize is the initial size of a scratch read buffer. /proc/PID/status is
// about 1.5 KiB on current kernels, stat and cgroup are smaller; cmdline
// and directory listings may grow the buffer, which then goes back to the
// pool at its grown size (capped, see putScratch).
const bufSize = 4096

// maxPooledBuf bounds what goes back into the pool so that one huge
// cmdline does not pin memory forever.
const maxPooledBuf = 256 << 10

// maxCached bounds each of a scratch's caches; a full cache is emptied.
const maxCached = 512

// scratch is what one read needs besides the FS: a read buffer, a buffer
// for NUL-terminated paths (handed to the kernel as they are: x/sys/unix
// would copy every path string into a new allocation), and caches of what
// /proc repeats from task to task, so that reading a task allocates
// nothing in the steady state:
//
//   - cgroups maps the whole text of a /proc/PID/cgroup file to its parsed
//     lines: the tasks of one cgroup have the same text. The lines are
//     shared and never modified.
//   - names interns comm and exe strings.
//
// Scratches come from a sync.Pool: a reader takes one for the length of a
// call, so the caches are per pooled scratch, not global, and need no lock.
type scratch struct {
	buf     []byte
	path    []byte
	cgroups map[string][]CgroupLine
	names   map[string]string
}

var scratchPool = sync.Pool{New: func() any {
	return &scratch{buf: make([]byte, bufSize), path: make([]byte, 0, 128)}
}}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(s *scratch) {
	if cap(s.buf) > maxPooledBuf {
		s.buf = make([]byte, bufSize)
	}
	scratchPool.Put(s)
}

// intern returns b as a string, the same string for the same bytes.
func (s *scratch) intern(b []byte) string {
	if v, ok := s.names[string(b)]; ok {
		return v
	}
	if s.names == nil || len(s.names) >= maxCached {
		s.names = make(map[string]string)
	}
	v := string(b)
	s.names[v] = v
	return v
}

// pidPath builds root/pid[/name] in s.path, NUL-terminated, and returns it
// with the NUL.
func (s *scratch) pidPath(root string, pid int, name string) []byte {
	b := append(s.path[:0], root...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(pid), 10)
	if name != "" {
		b = append(b, '/')
		b = append(b, name...)
	}
	b = append(b, 0)
	s.path = b
	return b
}

// threadPath builds root/pid/task/tid/name like pidPath.
func (s *scratch) threadPath(root string, pid, tid int, name string) []byte {
	b := append(s.path[:0], root...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, "/task/"...)
	b = strconv.AppendInt(b, int64(tid), 10)
	b = append(b, '/')
	b = append(b, name...)
	b = append(b, 0)
	s.path = b
	return b
}

// cstr returns p NUL-terminated, for paths built outside a scratch.
func cstr(p string) []byte {
	b := make([]byte, len(p)+1)
	copy(b, p)
	return b
}

// readFile reads the whole of path into *buf, growing it if needed, and
// returns the filled prefix. It uses raw system calls: procfs files are
// generated on read, and there is no point in registering them with the
// runtime poller as os.Open would.
//
// A read that leaves room in the buffer ends the file: the files read this
// way (status, stat, cgroup) are single-record seq_files (single_open),
// which generate their whole text before copying, so a read returns all of
// it that fits and a short read means the end; the read that would return 0
// is saved (one system call of three, on every classification). Other files
// (cmdline; children, an iterating seq_file that stops a read at a page of
// records) go through readFileFull, which reads until EOF.
func readFile(path string, buf *[]byte) ([]byte, error) {
	return readInto(cstr(path), buf, true)
}

// readFileFull is readFile for files whose reads may stop short of the end.
func readFileFull(path string, buf *[]byte) ([]byte, error) {
	return readInto(cstr(path), buf, false)
}

// readInto reads the file at the NUL-terminated path (see readFile).
func readInto(path []byte, buf *[]byte, shortIsEOF bool) ([]byte, error) {
	fd, err := openRetry(path, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	b := (*buf)[:cap(*buf)]
	n := 0
	for {
		if n == len(b) {
			nb := make([]byte, 2*len(b))
			copy(nb, b)
			b = nb
			*buf = b
		}
		m, err := unix.Read(fd, b[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return b[:n], nil
		}
		n += m
		if shortIsEOF && n < len(b) {
			return b[:n], nil
		}
	}
}

// atFDCWD is AT_FDCWD (-100) as a system call argument.
const atFDCWD = ^uintptr(99)

// openRetry is openat(AT_FDCWD, path, flags) on a NUL-terminated path,
// retried on EINTR.
func openRetry(path []byte, flags int) (int, error) {
	for {
		fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, atFDCWD, uintptr(unsafe.Pointer(&path[0])), uintptr(flags), 0, 0, 0)
		switch errno {
		case 0:
			return int(fd), nil
		case unix.EINTR:
			continue
		}
		return -1, errno
	}
}

// access is faccessat(AT_FDCWD, path, F_OK) on a NUL-terminated path.
func access(path []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_FACCESSAT, atFDCWD, uintptr(unsafe.Pointer(&path[0])), unix.F_OK)
	if errno != 0 {
		return errno
	}
	return nil
}

// readlinkInto reads the target of the symbolic link at the NUL-terminated
// path into *buf (grown if the target may not fit) and returns it.
func readlinkInto(path []byte, buf *[]byte) ([]byte, error) {
	b := (*buf)[:cap(*buf)]
	for {
		n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, atFDCWD, uintptr(unsafe.Pointer(&path[0])), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0)
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		default:
			return nil, errno
		}
		if int(n) < len(b) {
			return b[:n], nil
		}
		// Possibly truncated: retry with a larger buffer (PATH_MAX is
		// 4096, but be generous rather than wrong).
		if len(b) >= 1<<16 {
			return b[:n], nil
		}
		b = make([]byte, 2*len(b))
		*buf = b
	}
}

// readlink returns the target of a symbolic link at a NUL-terminated path.
func readlink(path []byte) (string, error) {
	var a [512]byte
	b := a[:]
	t, err := readlinkInto(path, &b)
	if err != nil {
		return "", err
	}
	return string(t), nil
}

// readDirInts lists the numeric entries of a directory (pids in /proc, tids
// in /proc/PID/task; a NUL-terminated path) with getdents64 into a pooled
// buffer; only the result slice is allocated.
func readDirInts(path []byte, out []int) ([]int, error) {
	fd, err := openRetry(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return out, err
	}
	defer unix.Close(fd)
	s := getScratch()
	defer putScratch(s)
	buf := s.buf[:cap(s.buf)]
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return out, err
		}
		if n <= 0 {
			return out, nil
		}
		out = parseDirents(buf[:n], out)
	}
}

// parseDirents appends the numeric names found in a getdents64 buffer.
// Layout of struct linux_dirent64: ino u64, off s64, reclen u16, type u8,
// name (NUL-terminated).
func parseDirents(b []byte, out []int) []int {
	const nameOff = 19
	for len(b) >= nameOff {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < nameOff || reclen > len(b) {
			return out
		}
		if v, ok := atoiName(b[nameOff:reclen]); ok {
			out = append(out, v)
		}
		b = b[reclen:]
	}
	return out
}

// atoiName parses a NUL-terminated decimal name; "." and ".." and anything
// non-numeric are rejected.
func atoiName(b []byte) (int, bool) {
	v, n := 0, 0
	for _, c := range b {
		if c == 0 {
			break
		}
		if c < '0' || c > '9' || n >= 10 {
			return 0, false
		}
		v = v*10 + int(c-'0')
		n++
	}
	return v, n > 0
}

// goneErr maps "the task vanished" causes to ESRCH while keeping the
// original error in the chain, so both errors.Is(err, unix.ESRCH) and
// errors.Is(err, fs.ErrNotExist) hold for a vanished task.
func goneErr(pid int, what string, err error) error {
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("proc: pid %d: %s: %w (%w)", pid, what, unix.ESRCH, err)
	}
	return fmt.Errorf("proc: pid %d: %s: %w", pid, what, err)
}

// readerBytes reads all of r; used only by the io.Reader parser entry
// points, which exist for tests and external callers.
func readerBytes(r io.Reader) ([]byte, error) { return io.ReadAll(r) }
