package e2e

import (
	"errors"
	"fmt"

	"github.com/cgrulesengd/cgrulesengd/internal/bpfevents"
)

// eventsEnv selects the kernel event source of every daemon the suite
// starts: CGRE_E2E_EVENTS=bpf or netlink adds --events=bpf or
// --events=netlink to its command line (daemonArgs, the service's and the
// package's OPTIONS, the demo); unset or "auto" leaves the daemon's default.
// `make test-e2e` runs the whole suite once with each source.
const eventsEnv = "CGRE_E2E_EVENTS"

// eventsSource is the run's source: "bpf", "netlink", or "" (the daemon's
// default). Set by TestMain (checkEvents).
var eventsSource string

// checkEvents reads eventsEnv. A run with the BPF source on a machine that
// cannot run it is skipped as a whole (skip says why): every daemon would
// refuse to start. An unknown value is an error.
func checkEvents(value string) (skip string, err error) {
	switch value {
	case "", "auto":
		return "", nil
	case "netlink":
	case "bpf":
		if err := bpfevents.Probe(); err != nil {
			if errors.Is(err, bpfevents.ErrNotSupported) {
				return fmt.Sprintf("%s=bpf: the BPF event source cannot run here (%v): the run with it is skipped", eventsEnv, err), nil
			}
			return "", fmt.Errorf("%s=bpf: opening the BPF event source: %w", eventsEnv, err)
		}
	default:
		return "", fmt.Errorf("%s=%q: want bpf, netlink or auto", eventsEnv, value)
	}
	eventsSource = value
	return "", nil
}

// eventsArgs are the daemon options that select the run's source.
func eventsArgs() []string {
	if eventsSource == "" {
		return nil
	}
	return []string{"--events=" + eventsSource}
}

// eventsOption is eventsArgs for a settings file's OPTIONS: "" or a
// leading blank and the option.
func eventsOption() string {
	if eventsSource == "" {
		return ""
	}
	return " --events=" + eventsSource
}
