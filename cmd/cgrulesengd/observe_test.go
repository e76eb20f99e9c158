package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/classify"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/internal/metrics"
	"github.com/cgrulesengd/cgrulesengd/internal/status"
)

// TestStatusCounters: --status shows every counter of the table once, by
// its name and value: each group on a line of its own, in table order,
// then the counters of their own under "counters".
func TestStatusCounters(t *testing.T) {
	vals := append(classify.Stats{}.Values(), classify.KernelValues(kernel.Stats{})...)
	for i := range vals {
		vals[i].Value = uint64(1000 + i)
	}
	var b bytes.Buffer
	t0 := time.Unix(1700000000, 0)
	status.Format(&b, &status.Report{Started: t0, Now: t0, Counters: statusCounters(vals)})
	out := b.String()
	// The groups' lines, then "counters:" (wrapped lines start with spaces).
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, " ") && len(lines) > 0:
			lines[len(lines)-1] += " " + strings.TrimSpace(l)
		case regexp.MustCompile(`^[a-z_]+: +[a-z_]+ \d`).MatchString(l):
			lines = append(lines, l)
		}
	}
	want := map[string][]string{}
	var order []string
	for _, v := range vals {
		g := v.Group
		if g == "" {
			g = "counters"
		}
		if _, ok := want[g]; !ok && g != "counters" {
			order = append(order, g)
		}
		want[g] = append(want[g], fmt.Sprintf("%s %d", v.Name, v.Value))
	}
	order = append(order, "counters")
	if len(lines) != len(order) {
		t.Fatalf("%d counter lines, want %d (%v):\n%s", len(lines), len(order), order, out)
	}
	for i, g := range order {
		wantLine := fmt.Sprintf("%-10s %s", g+":", strings.Join(want[g], ", "))
		if got := strings.Join(strings.Fields(lines[i]), " "); got != strings.Join(strings.Fields(wantLine), " ") {
			t.Errorf("line %d:\n got %s\nwant %s", i, got, wantLine)
		}
	}
}

// TestMetricsExposure: only a TCP address other machines may reach gets
// the warning.
func TestMetricsExposure(t *testing.T) {
	for _, c := range []struct {
		addr    string
		exposed bool
	}{
		{"127.0.0.1:9580", false},
		{"127.1.2.3:9580", false},
		{"[::1]:9580", false},
		{"unix:/run/cgrulesengd-metrics.sock", false},
		{"0.0.0.0:9580", true},
		{"[::]:9580", true},
		{"192.0.2.7:9580", true},
		{"[::ffff:127.0.0.1]:9580", false},
	} {
		a, err := metrics.ParseAddress(c.addr)
		if err != nil {
			t.Fatal(err)
		}
		w := metricsExposure(a)
		if (w != "") != c.exposed {
			t.Errorf("%s: warning %q, want one: %v", c.addr, w, c.exposed)
		}
		if c.exposed && !strings.Contains(w, a.Addr+" is not a loopback address") {
			t.Errorf("%s: the warning does not name the address: %q", c.addr, w)
		}
	}
}
