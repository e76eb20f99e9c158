package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/cilium/ebpf"

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

// sourceDrops is how many events the kernel could not hand to daemon pid's
// source: the drops of its proc connector socket, or the losses its BPF
// programs counted. It works while the daemon is stopped.
func sourceDrops(pid int) (uint64, error) {
	if eventsSource == "bpf" {
		return bpfLost(pid)
	}
	return netlinkDrops(pid)
}

// bpfLost reads the lost count of daemon pid's BPF source from its
// "counters" map, found among the maps of its descriptors (by the map ids
// in /proc/PID/fdinfo: other programs on the machine have maps of that
// name too).
func bpfLost(pid int) (uint64, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join(dir, ent.Name()))
		if err != nil {
			continue
		}
		m := regexp.MustCompile(`(?m)^map_id:\s+(\d+)$`).FindSubmatch(b)
		if m == nil {
			continue
		}
		id, _ := strconv.ParseUint(string(m[1]), 10, 32)
		mp, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			continue
		}
		info, err := mp.Info()
		if err != nil || info.Name != "counters" {
			mp.Close()
			continue
		}
		val := make([]byte, mp.ValueSize())
		err = mp.Lookup(uint32(0), &val)
		mp.Close()
		if err != nil {
			return 0, fmt.Errorf("reading the BPF source's counters of pid %d: %w", pid, err)
		}
		return binary.NativeEndian.Uint64(val), nil // cgre_counters.lost
	}
	return 0, fmt.Errorf("pid %d holds no BPF map named counters", pid)
}
