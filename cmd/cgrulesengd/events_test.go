package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/cgrulesengd/cgrulesengd/internal/bpfevents"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// TestIntegrationOpenEvents: --events selects the source; auto falls back
// to the proc connector when the BPF source cannot run (forced here with a
// BTF file that is not BTF) and logs why, once; bpf then fails instead.
func TestIntegrationOpenEvents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the proc connector and BPF programs")
	}
	badBTF := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(badBTF, []byte("not BTF"), 0o644); err != nil {
		t.Fatal(err)
	}
	bpfErr := bpfevents.Probe()
	for _, c := range []struct {
		name     string
		events   string
		btf      string
		kind     string // "" = an error
		reason   string // the fallback's reason
		warnings int
	}{
		{name: "netlink", events: eventsNetlink, kind: eventsNetlink},
		{name: "auto", events: eventsAuto, kind: eventsBPF},
		{name: "bpf", events: eventsBPF, kind: eventsBPF},
		{name: "auto without BTF", events: eventsAuto, btf: badBTF, kind: eventsNetlink, reason: bpfevents.ReasonNoBTF.String(), warnings: 1},
		{name: "bpf without BTF", events: eventsBPF, btf: badBTF},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.kind == eventsBPF && bpfErr != nil {
				t.Skipf("the BPF source cannot run here: %v", bpfErr)
			}
			o := defaultOptions()
			o.events, o.bpfBTF = c.events, c.btf
			log, hook := logtest.NewNullLogger()
			log.SetLevel(logrus.DebugLevel)
			es, err := openEvents(o, wantedEvents, log)
			if c.kind == "" {
				if err == nil || !errors.Is(err, bpfevents.ErrNotSupported) || !strings.Contains(err.Error(), "--events=bpf") {
					es.Close()
					t.Fatalf("openEvents: %v, want an error wrapping bpfevents.ErrNotSupported naming --events=bpf", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer es.Close()
			if es.kind != c.kind || (es.bpf != nil) != (c.kind == eventsBPF) || (es.conn != nil) != (c.kind == eventsNetlink) {
				t.Errorf("kind %q (bpf %v, conn %v), want %q", es.kind, es.bpf != nil, es.conn != nil, c.kind)
			}
			if got := es.fallbackReason(); got != c.reason {
				t.Errorf("fallback reason %q (%v), want %q", got, es.fallback, c.reason)
			}
			warnings, info := 0, ""
			for _, e := range hook.AllEntries() {
				switch e.Level {
				case logrus.WarnLevel, logrus.ErrorLevel:
					warnings++
					if !strings.Contains(e.Message, c.reason) {
						t.Errorf("the fallback's warning %q does not say why (%s)", e.Message, c.reason)
					}
				case logrus.InfoLevel:
					info = e.Message
					if h, ok := e.Data["hooks"].(string); c.kind == eventsBPF && (!ok || !strings.Contains(h, "tp_btf")) {
						t.Errorf("the BPF source's log line does not name its hooks: %v", e.Data)
					}
				}
			}
			if warnings != c.warnings {
				t.Errorf("%d warnings, want %d", warnings, c.warnings)
			}
			if want := map[string]string{eventsBPF: "BPF source", eventsNetlink: "proc connector"}[c.kind]; !strings.Contains(info, want) {
				t.Errorf("log says %q, want it to name the %s", info, want)
			}
			// Its counters, for --status and /metrics: which source runs,
			// RssAnon, and the BPF source's own with its maps' memory.
			vals := map[string]uint64{}
			for _, v := range es.values() {
				vals[v.Key()] = v.Value
			}
			if len(es.defs()) != len(vals) || vals["event_source_"+c.kind] != 1 || vals["rss_anon_bytes"] == 0 {
				t.Errorf("values %v", vals)
			}
			if _, ok := vals["bpf_map_bytes"]; ok != (c.kind == eventsBPF) || (ok && vals["bpf_map_bytes"] == 0) {
				t.Errorf("BPF map memory: %v", vals)
			}
			if err := es.setFilter(rules.Names{UIDs: []uint32{4242}}); err != nil {
				t.Errorf("setFilter: %v", err)
			}
			hook.Reset()
			es.warnWidened(log)
			if n := len(hook.AllEntries()); n != 0 {
				t.Errorf("a filter that fits is said to be widened: %v", hook.LastEntry())
			}
			if c.kind == eventsBPF {
				many := make([]uint32, bpfevents.DefaultMaxIDs+1)
				for i := range many {
					many[i] = uint32(i)
				}
				if err := es.setFilter(rules.Names{UIDs: many}); err != nil {
					t.Errorf("setFilter of too many uids: %v", err)
				}
				es.warnWidened(log)
				if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel || !strings.Contains(e.Message, "wider than the rules ask") {
					t.Errorf("a widened filter is not logged: %v", e)
				}
			}
			if es.reader() == nil {
				t.Error("no reader")
			}
			// The source delivers: a Close wakes a Read with kernel.ErrClosed.
			done := make(chan error, 1)
			go func() {
				var buf [64]kernel.Event
				for {
					if _, err := es.Read(buf[:0]); err != nil {
						done <- err
						return
					}
				}
			}()
			es.Close()
			if err := <-done; !errors.Is(err, kernel.ErrClosed) {
				t.Errorf("Read after Close: %v, want kernel.ErrClosed", err)
			}
		})
	}
}
