package bpfevents

import "github.com/cilium/ebpf"

// loadSpec returns the committed object's collection spec.
func loadSpec() (*ebpf.CollectionSpec, error) {
	return loadBpf()
}
