package bpfevents

// The BPF object is compiled from events.bpf.c by bpf2go and committed
// (bpf_x86_bpfel.go, bpf_x86_bpfel.o), so that building and testing need no
// clang. `make generate` runs this with Debian's clang and llvm-strip;
// TestGeneratedObjectIsCurrent checks that the committed object is what the
// sources compile to.
//go:generate go tool github.com/cilium/ebpf/cmd/bpf2go -cc clang -strip llvm-strip -target amd64 bpf events.bpf.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror
