package status

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Report is what the daemon tells --status. Its JSON form is the protocol;
// fields are only ever added.
type Report struct {
	Version    string    `json:"version"`
	PID        int       `json:"pid"`
	Started    time.Time `json:"started"`
	Now        time.Time `json:"now"`
	Mode       string    `json:"mode"` // v1, hybrid, v2
	CgroupRoot string    `json:"cgroup_root"`

	// Events is the kernel event source: "bpf" or "netlink" (--events);
	// EventsFallback why --events=auto did not take the BPF source ("no
	// kernel BTF", ...), "" when it did or was not asked to.
	Events         string `json:"events,omitempty"`
	EventsFallback string `json:"events_fallback,omitempty"`
	// Memory in bytes: the daemon's RssAnon, and the kernel memory of the
	// BPF source's maps (0 with the proc connector).
	RssAnon   uint64 `json:"rss_anon"`
	MapMemory uint64 `json:"bpf_map_memory"`

	Rules      int     `json:"rules"` // rules in force
	LastReload *Reload `json:"last_reload,omitempty"`
	ReloadsOK  uint64  `json:"reloads_ok"`
	ReloadsBad uint64  `json:"reloads_failed"`

	// Counters in the order they are shown, grouped by Group.
	Counters []Counter `json:"counters"`
	// Hits of every rule in force since it was loaded, in file order.
	RuleHits []RuleHit `json:"rule_hits"`
}

// Reload is the outcome of the last reload.
type Reload struct {
	Time  time.Time `json:"time"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"` // first line of the error
	Rules int       `json:"rules"`           // rules in force afterwards
}

// Counter is one counter with its group ("events", "moved", ...).
type Counter struct {
	Group string `json:"group"`
	Name  string `json:"name"`
	Value uint64 `json:"value"`
}

// RuleHit is how often a rule decided a task's place.
type RuleHit struct {
	Rule string `json:"rule"` // file:line
	Text string `json:"text"` // the rule as written (Format)
	Hits uint64 `json:"hits"`
}

// topRules is how many rules Format lists by hits.
const topRules = 10

// Format prints r for a person: uptime, rules, the last reload, the
// counters by group, the rules with most hits and those with none.
func Format(w io.Writer, r *Report) {
	up := r.Now.Sub(r.Started).Round(time.Second)
	fmt.Fprintf(w, "cgrulesengd %s, pid %d, up %v (since %s)\n", r.Version, r.PID, up, r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "cgroups: %s, cgroup root %s\n", r.Mode, r.CgroupRoot)
	if r.Events != "" {
		how := map[string]string{"bpf": "BPF programs filter them in the kernel", "netlink": "the proc connector"}[r.Events]
		if r.EventsFallback != "" {
			how += ", as BPF cannot run here: " + r.EventsFallback
		}
		fmt.Fprintf(w, "event source: %s (%s)\n", r.Events, how)
		fmt.Fprintf(w, "memory: RssAnon %s", mebibytes(r.RssAnon))
		if r.Events == "bpf" {
			fmt.Fprintf(w, ", BPF maps %s (kernel)", mebibytes(r.MapMemory))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "rules: %d in force", r.Rules)
	if r.LastReload == nil {
		fmt.Fprintf(w, "; not reloaded since start\n")
	} else {
		ago := r.Now.Sub(r.LastReload.Time).Round(time.Second)
		if r.LastReload.OK {
			fmt.Fprintf(w, "; last reload %v ago: ok, %d rules\n", ago, r.LastReload.Rules)
		} else {
			fmt.Fprintf(w, "; last reload %v ago: FAILED (the rules before stay in force): %s\n", ago, r.LastReload.Error)
		}
	}
	fmt.Fprintf(w, "reloads: %d ok, %d failed\n", r.ReloadsOK, r.ReloadsBad)

	var group string
	var line []string
	flush := func() {
		// One line per group, wrapped under its items at 100 columns.
		out := fmt.Sprintf("%-10s ", group+":")
		indent := strings.Repeat(" ", len(out))
		width := len(out)
		for i, item := range line {
			if i < len(line)-1 {
				item += ","
			}
			if i > 0 && width+1+len(item) > 100 {
				out += "\n" + indent
				width = len(indent)
			} else if i > 0 {
				out += " "
				width++
			}
			out += item
			width += len(item)
		}
		if len(line) > 0 {
			fmt.Fprintln(w, out)
		}
		line = line[:0]
	}
	for _, c := range r.Counters {
		if c.Group != group {
			flush()
			group = c.Group
		}
		line = append(line, fmt.Sprintf("%s %d", c.Name, c.Value))
	}
	flush()

	hits := slices.Clone(r.RuleHits)
	slices.SortStableFunc(hits, func(a, b RuleHit) int { return cmp.Compare(b.Hits, a.Hits) })
	var top, none []RuleHit
	for _, h := range hits {
		if h.Hits == 0 {
			none = append(none, h)
		} else if len(top) < topRules {
			top = append(top, h)
		}
	}
	if len(top) > 0 {
		fmt.Fprintf(w, "top rules by hits since they were loaded:\n")
		for _, h := range top {
			fmt.Fprintf(w, "  %8d  %s  %s\n", h.Hits, h.Rule, h.Text)
		}
	}
	if len(none) > 0 {
		fmt.Fprintf(w, "rules with no hit since they were loaded (%d):\n", len(none))
		for i, h := range none {
			if i == topRules {
				fmt.Fprintf(w, "  ... and %d more\n", len(none)-topRules)
				break
			}
			fmt.Fprintf(w, "  %s  %s\n", h.Rule, h.Text)
		}
	}
}

// mebibytes renders a size in bytes as "6.4 MiB".
func mebibytes(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
