package fdreserve

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/fdreserve/fdtest"
)

// TestAcceptWithSpare: with every descriptor taken, a plain accept fails
// with EMFILE and the connection waits; Accept takes it with the spare,
// once, and after Refill (once descriptors are back) can do it again.
func TestAcceptWithSpare(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := New()
	defer r.Close()
	if !r.Held() {
		t.Fatal("no spare after New")
	}
	// Two clients, connected before the table fills (their descriptors
	// are this process's too).
	for i := 0; i < 2; i++ {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	fdtest.Exhaust(t, 0)
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Fatal("accept worked with the descriptor table full: the test proves nothing")
	} else if !OutOfDescriptors(err) {
		t.Fatalf("accept: %v, want EMFILE", err)
	}
	c, spent, err := r.Accept(ln.Accept)
	if err != nil || !spent {
		t.Fatalf("Accept with the spare: %v, %v, spent %v", c, err, spent)
	}
	if r.Held() {
		t.Error("the spare is held while its number serves a connection")
	}
	// The spare is spent: a second connection waits.
	if _, spent, err := r.Accept(ln.Accept); err == nil || spent || !OutOfDescriptors(err) {
		t.Errorf("second Accept with the spare spent: spent %v, %v; want EMFILE", spent, err)
	}
	r.Refill()
	if r.Held() {
		t.Error("Refill took a descriptor while none is free")
	}
	c.Close()
	r.Refill()
	if !r.Held() {
		t.Fatal("Refill did not take the spare back once the connection closed")
	}
	c, spent, err = r.Accept(ln.Accept)
	if err != nil || !spent {
		t.Fatalf("Accept after Refill: %v, spent %v", err, spent)
	}
	c.Close()
	r.Refill()
}

// TestAcceptPassesOtherErrors: a listener that fails otherwise keeps its
// spare and the error.
func TestAcceptPassesOtherErrors(t *testing.T) {
	r := New()
	defer r.Close()
	boom := errors.New("boom")
	calls := 0
	_, spent, err := r.Accept(func() (net.Conn, error) { calls++; return nil, boom })
	if err != boom || spent || calls != 1 || !r.Held() {
		t.Errorf("err %v, spent %v, calls %d, held %v; want boom, false, 1, true", err, spent, calls, r.Held())
	}
	// EMFILE twice: the spare did not help; it is taken back.
	_, spent, err = r.Accept(func() (net.Conn, error) { calls++; return nil, unix.EMFILE })
	if !errors.Is(err, unix.EMFILE) || spent || calls != 3 || !r.Held() {
		t.Errorf("err %v, spent %v, calls %d, held %v; want EMFILE, false, 3, true", err, spent, calls, r.Held())
	}
}
