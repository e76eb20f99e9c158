package main

import (
	"errors"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/cgrulesengd/cgrulesengd/internal/bpfevents"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

// eventSource is the daemon's source of kernel process events, chosen by
// --events: the BPF source or the proc connector. The engine reads it
// through Read alone; only start-up, --status and the metrics look at
// which one it is.
type eventSource struct {
	kind string            // eventsBPF or eventsNetlink
	bpf  *bpfevents.Source // the BPF source, or nil
	conn *kernel.Conn      // the proc connector, or nil
	// fallback: why --events=auto runs the proc connector (the BPF
	// source's *bpfevents.NotSupportedError); nil when it was not asked
	// for or is in use.
	fallback error
}

// openEvents opens the event source o.events asks for: with "auto" the BPF
// source where it can run here, else the proc connector (subscribed to
// wanted), logging why once; with "bpf" the BPF source or an error saying
// why not; with "netlink" the proc connector. The log says which source
// runs, and the BPF source's kernel hooks.
func openEvents(o options, wanted kernel.What, log logrus.FieldLogger) (*eventSource, error) {
	es := &eventSource{}
	if o.events != eventsNetlink {
		s, err := bpfevents.Open(bpfevents.Config{RingBuffer: o.bpfRing, KernelBTF: o.bpfBTF})
		switch {
		case err == nil:
			es.kind, es.bpf = eventsBPF, s
			log.WithField("hooks", s.Hooks()).Info("kernel events: BPF source")
			return es, nil
		case o.events == eventsBPF:
			return nil, fmt.Errorf("opening the BPF event source (--events=bpf): %w", err)
		case !errors.Is(err, bpfevents.ErrNotSupported):
			// Not a lack of support: memory, a bug. The proc connector
			// still serves; say so louder.
			log.Errorf("kernel events: the BPF source failed, using the proc connector: %v", err)
		default:
			log.Warnf("kernel events: using the proc connector: %v", err)
		}
		es.fallback = err
	}
	conn, err := kernel.Listen(kernel.Config{ReceiveBuffer: o.netlinkBuf, Events: wanted})
	if err != nil {
		return nil, fmt.Errorf("subscribing to the kernel's process events: %w", err)
	}
	es.kind, es.conn = eventsNetlink, conn
	log.WithField("filtered", conn.Filtered()).Info("kernel events: proc connector")
	return es, nil
}

// Read reads the source in use (classify.Source).
func (es *eventSource) Read(dst []kernel.Event) ([]kernel.Event, error) {
	if es.bpf != nil {
		return es.bpf.Read(dst)
	}
	return es.conn.Read(dst)
}

// Close closes the source in use; a blocked Read returns kernel.ErrClosed.
func (es *eventSource) Close() error {
	if es.bpf != nil {
		return es.bpf.Close()
	}
	return es.conn.Close()
}

// fallbackReason is the short reason of a fallback ("no kernel BTF", ...),
// or "".
func (es *eventSource) fallbackReason() string {
	var nse *bpfevents.NotSupportedError
	if errors.As(es.fallback, &nse) {
		return nse.Reason.String()
	}
	if es.fallback != nil {
		return "error"
	}
	return ""
}
