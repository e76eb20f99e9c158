package proc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// bufSize is the initial size of pooled read buffers. /proc/PID/status is
// about 1.5 KiB on current kernels, stat and cgroup are smaller; cmdline
// and directory listings may grow the buffer, which then goes back to the
// pool at its grown size (capped, see putBuf).
const bufSize = 4096

// maxPooledBuf bounds what goes back into the pool so that one huge
// cmdline does not pin memory forever.
const maxPooledBuf = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= maxPooledBuf {
		bufPool.Put(b)
	}
}

// pidPath builds root/pid/name with a single allocation.
func (fs FS) pidPath(pid int, name string) string {
	var a [64]byte
	b := append(a[:0], fs.root...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(pid), 10)
	if name != "" {
		b = append(b, '/')
		b = append(b, name...)
	}
	return string(b)
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
	return readInto(path, buf, true)
}

// readFileFull is readFile for files whose reads may stop short of the end.
func readFileFull(path string, buf *[]byte) ([]byte, error) {
	return readInto(path, buf, false)
}

func readInto(path string, buf *[]byte, shortIsEOF bool) ([]byte, error) {
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

func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// readlink returns the target of a symbolic link, allocating only the
// result string.
func readlink(path string) (string, error) {
	var a [512]byte
	b := a[:]
	for {
		n, err := unix.Readlink(path, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", err
		}
		if n < len(b) {
			return string(b[:n]), nil
		}
		// Possibly truncated: retry with a larger buffer (PATH_MAX is
		// 4096, but be generous rather than wrong).
		if len(b) >= 1<<16 {
			return string(b[:n]), nil
		}
		b = make([]byte, 2*len(b))
	}
}

// readDirInts lists the numeric entries of a directory (pids in /proc, tids
// in /proc/PID/task) with getdents64 into a pooled buffer; only the result
// slice is allocated.
func readDirInts(path string, out []int) ([]int, error) {
	fd, err := openRetry(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return out, err
	}
	defer unix.Close(fd)
	bp := getBuf()
	defer putBuf(bp)
	buf := (*bp)[:cap(*bp)]
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
