//go:build !amd64

package bpfevents

import (
	"runtime"

	"github.com/cilium/ebpf"
)

// loadSpec: the committed object is compiled for x86-64 only (its system
// call numbers and pt_regs are x86-64's).
func loadSpec() (*ebpf.CollectionSpec, error) {
	return nil, notSupported(ReasonArch, "the BPF object is built for amd64, this is %s", runtime.GOARCH)
}
