package proc

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestThreadCreds(t *testing.T) {
	root := t.TempDir()
	// A process half way through setresuid: its main thread still shows
	// root, thread 201 already has the new ids.
	write := func(rel, uid, gid string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		body := "Name:\tworker\nTgid:\t200\nPPid:\t1\nUid:\t" + uid + "\nGid:\t" + gid + "\n"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("200/status", "0\t0\t0\t0", "0\t0\t0\t0")
	write("200/task/200/status", "0\t0\t0\t0", "0\t0\t0\t0")
	write("200/task/201/status", "1000\t1001\t1000\t1001", "50\t51\t50\t51")
	fs := NewFS(root)
	euid, egid, err := fs.ThreadCreds(200, 201)
	if err != nil || euid != 1001 || egid != 51 {
		t.Fatalf("ThreadCreds(200, 201) = %d, %d, %v; want 1001, 51", euid, egid, err)
	}
	if _, _, err := fs.ThreadCreds(200, 202); !errors.Is(err, unix.ESRCH) {
		t.Fatalf("missing thread: err = %v, want ESRCH", err)
	}
}
