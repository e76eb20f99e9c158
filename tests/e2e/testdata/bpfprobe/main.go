// Command bpfprobe opens the daemon's BPF event source once and says
// whether it runs here: "ok" and the hooks in use (exit 0), or why not
// (exit 1). TestUnitHardening runs it under the unit's hardening: the unit
// must allow what the source needs, and nothing more.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/cgrulesengd/cgrulesengd/internal/bpfevents"
)

func main() {
	s, err := bpfevents.Open(bpfevents.Config{})
	if err != nil {
		var nse *bpfevents.NotSupportedError
		if errors.As(err, &nse) {
			fmt.Printf("not supported: %v: %v\n", nse.Reason, err)
		} else {
			fmt.Printf("error: %v\n", err)
		}
		os.Exit(1)
	}
	fmt.Printf("ok: %s\n", s.Hooks())
	if err := s.Close(); err != nil {
		fmt.Printf("error: closing: %v\n", err)
		os.Exit(1)
	}
}
