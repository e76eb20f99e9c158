package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// readyEnv tells a re-executed copy of the daemon that it is the background
// daemon and which file descriptor reports its readiness to the starter.
const readyEnv = "_CGRULESENGD_READY_FD"

// startBackground re-executes the daemon detached (new session, stdio on
// /dev/null) and waits until it reports ready, so that the starting command
// fails with the daemon's own error message when it cannot start. Go cannot
// fork without exec, hence the re-exec.
func startBackground(args []string, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "cgrulesengd: cannot find own executable: %v\n", err)
		return 1
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "cgrulesengd: %v\n", err)
		return 1
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(stderr, "cgrulesengd: %v\n", err)
		return 1
	}
	defer devnull.Close()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), readyEnv+"=3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "cgrulesengd: starting daemon: %v\n", err)
		return 1
	}
	w.Close()
	msg, _ := io.ReadAll(r)
	r.Close()
	// Warnings come first, one per line, then "ready" or the error.
	for {
		line, rest, ok := bytes.Cut(msg, []byte("\n"))
		if !ok || !bytes.HasPrefix(line, []byte("warning: ")) {
			break
		}
		fmt.Fprintf(stderr, "cgrulesengd: %s\n", line)
		msg = rest
	}
	if bytes.Equal(msg, []byte("ready\n")) {
		// The daemon lives on in its own session; let it go.
		_ = cmd.Process.Release()
		return 0
	}
	text := strings.TrimSpace(string(msg))
	if text == "" {
		// Died without a word (killed, crashed): report how.
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			text = fmt.Sprintf("daemon exited before it was ready: %v", err)
		case <-time.After(2 * time.Second):
			text = "daemon closed its readiness pipe without reporting"
		}
	}
	fmt.Fprintf(stderr, "cgrulesengd: %s\n", text)
	return 1
}

// notifier reports readiness (or the start-up error) to whoever started
// the daemon: the background starter's pipe, or nobody in the foreground.
type notifier struct{ f *os.File }

func notifierFromEnv() *notifier {
	v := os.Getenv(readyEnv)
	if v == "" {
		return &notifier{}
	}
	os.Unsetenv(readyEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return &notifier{}
	}
	return &notifier{f: os.NewFile(uintptr(fd), "ready-pipe")}
}

func (n *notifier) background() bool { return n.f != nil }

// warn passes a warning to the starter (background mode only).
func (n *notifier) warn(msg string) {
	if n.f == nil {
		return
	}
	_, _ = n.f.WriteString("warning: " + strings.ReplaceAll(msg, "\n", " ") + "\n")
}

func (n *notifier) ready() {
	if n.f == nil {
		return
	}
	_, _ = n.f.WriteString("ready\n")
	n.f.Close()
	n.f = nil
}

func (n *notifier) fail(err error) {
	if n.f == nil {
		return
	}
	_, _ = n.f.WriteString(err.Error() + "\n")
	n.f.Close()
	n.f = nil
}

// writePidfile writes pid atomically so that readers never see a partial
// file: a pidfile that exists is complete and names a ready daemon.
func writePidfile(path string, pid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cgrulesengd.pid.*")
	if err != nil {
		return fmt.Errorf("writing pidfile %s: %w", path, err)
	}
	if _, err := fmt.Fprintf(tmp, "%d\n", pid); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("writing pidfile %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("writing pidfile %s: %w", path, err)
	}
	tmp.Close()
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing pidfile %s: %w", path, err)
	}
	return nil
}

// removePidfile removes path only if it still names pid (another daemon
// may have taken over).
func removePidfile(path string, pid int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if strings.TrimSpace(string(b)) == strconv.Itoa(pid) {
		os.Remove(path)
	}
}
