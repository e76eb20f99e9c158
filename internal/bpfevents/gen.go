package bpfevents

// The BPF object is compiled from events.bpf.c (and kernel.bpf.h) by
// bpf2go and committed (bpf_x86_bpfel.go, bpf_x86_bpfel.o), so that
// building and testing need no clang. `make generate` installs Debian's
// clang, llvm and libbpf-dev where they are missing and runs these; the
// compiler's version goes to testdata/clang-version. The output is the same
// byte for byte wherever the checkout is (bpf2go maps the source directory
// out of the debug information and leaves out the compiler's ident), so
// TestGeneratedObjectIsCurrent compiles the sources again with the same
// clang and compares.
//go:generate go tool github.com/cilium/ebpf/cmd/bpf2go -cc clang -strip llvm-strip -target amd64 bpf events.bpf.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror
//go:generate sh -c "clang --version | head -n1 > testdata/clang-version"
