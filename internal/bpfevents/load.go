package bpfevents

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// loaded is what load hands open: the objects in the kernel, attached.
type loaded struct {
	coll  *ebpf.Collection
	links []link.Link
	hooks string
}

// load checks what the programs need, in the order of Reason, loads the
// collection and attaches its programs. Its errors are *NotSupportedError
// when the kernel or process cannot run the source.
func load(spec *ebpf.CollectionSpec, cfg Config, o options) (*loaded, error) {
	var kt *btf.Spec
	var err error
	if o.kernelBTF != "" {
		kt, err = btf.LoadSpec(o.kernelBTF)
	} else {
		kt, err = btf.LoadKernelSpec()
	}
	if err != nil {
		return nil, notSupported(ReasonNoBTF, "loading the kernel's BTF (CONFIG_DEBUG_INFO_BTF, /sys/kernel/btf/vmlinux): %w", err)
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return nil, notSupported(ReasonNoRingBuffer, "creating a BPF ring buffer (Linux 5.8+): %w", err)
		}
		return nil, refusal("creating a BPF ring buffer", err)
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones
	// to the memory cgroup, and this does nothing.
	_ = rlimit.RemoveMemlock()

	commitErr := errors.New("not tried (forced off)")
	if !o.noCommitHook {
		commitErr = commitHookAllowed(kt)
	}
	if commitErr == nil {
		l, err := loadHooks(spec.Copy(), cfg, o, kt, true)
		if err == nil {
			l.hooks = "credentials: fentry/fexit commit_creds (every change); " + processHooks
			return l, nil
		}
		// An empty fentry program was allowed, ours was not: the system
		// call hooks still do.
		commitErr = fmt.Errorf("the commit_creds programs were refused: %w", err)
	}
	l, err := loadHooks(spec, cfg, o, kt, false)
	if err != nil {
		return nil, err
	}
	l.hooks = "credentials: tp_btf sys_exit (the set*id system calls: x86-64, x32 and i386) " +
		"and sched_process_exec (set-user-ID and set-group-ID programs), as fentry on commit_creds " +
		"is not possible here (" + commitErr.Error() + "); " + processHooks
	return l, nil
}

const processHooks = "processes: tp_btf sched_process_fork, sched_process_exec, sched_process_exit, task_rename"

// loadHooks loads and attaches spec's programs: with commit, those on
// commit_creds, else the system call hook.
func loadHooks(spec *ebpf.CollectionSpec, cfg Config, o options, kt *btf.Spec, commit bool) (*loaded, error) {
	spec.Maps[mapEvents].MaxEntries = uint32(cfg.RingBuffer)
	for _, name := range []string{mapUIDs, mapGIDs} {
		spec.Maps[name].MaxEntries = uint32(cfg.MaxIDs)
	}
	spec.Maps[mapNames].MaxEntries = uint32(cfg.MaxNames)
	for _, name := range []string{mapHot, mapSettled, mapSticky, mapExits} {
		spec.Maps[name].MaxEntries = uint32(cfg.MaxTasks)
	}
	if commit {
		delete(spec.Programs, progSysExit)
		if err := spec.Variables[varCommitHook].Set(uint32(1)); err != nil {
			return nil, fmt.Errorf("bpfevents: %w", err)
		}
	} else {
		delete(spec.Programs, progCommit)
		delete(spec.Programs, progCommitExit)
	}
	if o.mutate != nil {
		o.mutate(spec)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: kt},
	})
	if err != nil {
		if errors.Is(err, unix.ENOMEM) {
			return nil, fmt.Errorf("bpfevents: loading the programs: %w", err)
		}
		return nil, refusal("loading the programs", err)
	}
	l := &loaded{coll: coll}
	for name, ps := range spec.Programs {
		lk, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs[name], AttachType: ps.AttachType})
		if err != nil {
			for _, lk := range l.links {
				lk.Close()
			}
			coll.Close()
			return nil, refusal("attaching program "+name+" ("+ps.SectionName+")", err)
		}
		l.links = append(l.links, lk)
	}
	// The links hold the programs in the kernel: the programs' own
	// descriptors are not needed any more, and a daemon under a tight
	// open-file limit wants them back.
	for name, p := range coll.Programs {
		p.Close()
		delete(coll.Programs, name)
	}
	return l, nil
}

// refusal classifies an error of the kernel: EPERM without the capabilities
// BPF needs is a lack of privilege, anything else a refusal (with them,
// EPERM means kernel lockdown or a security module).
func refusal(what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		// cilium/ebpf blames RLIMIT_MEMLOCK for every EPERM; open removed
		// that limit already, so the hint only misleads.
		err = withoutHint{err}
		if missing := missingCaps(); missing != "" {
			return notSupported(ReasonNoPrivilege, "%s: %w (this process lacks %s)", what, err, missing)
		}
		return notSupported(ReasonRefused, "%s: %w (the process has CAP_BPF and CAP_PERFMON: kernel lockdown, a security module or a system call filter?)", what, err)
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return notSupported(ReasonRefused, "%s: the verifier refused: %w", what, err)
	}
	return notSupported(ReasonRefused, "%s: %w", what, err)
}

// missingCaps names the capabilities this process lacks to load tracing
// programs: CAP_BPF and CAP_PERFMON (Linux 5.8+), or CAP_SYS_ADMIN.
func missingCaps() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	var eff uint64
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			eff, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	has := func(c int) bool { return eff&(1<<c) != 0 }
	if has(unix.CAP_SYS_ADMIN) || has(unix.CAP_BPF) && has(unix.CAP_PERFMON) {
		return ""
	}
	var miss []string
	for _, c := range []struct {
		n    int
		name string
	}{{unix.CAP_BPF, "CAP_BPF"}, {unix.CAP_PERFMON, "CAP_PERFMON"}} {
		if !has(c.n) {
			miss = append(miss, c.name)
		}
	}
	return strings.Join(miss, " and ") + " (or CAP_SYS_ADMIN)"
}

var (
	commitOnce sync.Once
	commitErr  error
)

// commitHookAllowed reports, once per process, whether an fentry program
// on commit_creds loads and attaches here: nil, or why not (kernel lockdown
// refuses fentry with EPERM on this project's machines).
func commitHookAllowed(kt *btf.Spec) error {
	commitOnce.Do(func() {
		p, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
			Name:       "cgre_probe",
			Type:       ebpf.Tracing,
			AttachType: ebpf.AttachTraceFEntry,
			AttachTo:   "commit_creds",
			Instructions: asm.Instructions{
				asm.Mov.Imm(asm.R0, 0),
				asm.Return(),
			},
			License: "Dual MIT/GPL",
		}, ebpf.ProgramOptions{KernelTypes: kt})
		if errors.Is(err, unix.EPERM) {
			// Not cilium's hint (MEMLOCK): RemoveMemlock ran already.
			commitErr = fmt.Errorf("loading fentry/commit_creds: %w (kernel lockdown or a security module refuses it)", unix.EPERM)
			return
		}
		if err != nil {
			commitErr = fmt.Errorf("loading fentry/commit_creds: %w", err)
			return
		}
		defer p.Close()
		lk, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceFEntry})
		if err != nil {
			commitErr = fmt.Errorf("attaching fentry/commit_creds: %w", err)
			return
		}
		lk.Close()
	})
	return commitErr
}

var (
	failMu  sync.Mutex
	failErr error
)

// cachedFailure returns the *NotSupportedError of an earlier Open, if any:
// what the kernel does not offer does not change while the daemon runs.
func cachedFailure() error {
	failMu.Lock()
	defer failMu.Unlock()
	return failErr
}

func cacheFailure(err error) {
	failMu.Lock()
	defer failMu.Unlock()
	if failErr == nil {
		failErr = err
	}
}

var (
	probeOnce sync.Once
	probeErr  error
)

// Probe reports whether the BPF source can run here, with the default
// Config: nil, or the *NotSupportedError saying why not (or another error
// of the attempt). It opens and closes a Source once per process and
// caches the answer.
func Probe() error {
	probeOnce.Do(func() {
		s, err := Open(Config{})
		if err == nil {
			err = s.Close()
		}
		probeErr = err
	})
	return probeErr
}

// memlockHint is what cilium/ebpf adds to an EPERM.
const memlockHint = " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)"

// withoutHint is an error without cilium/ebpf's RLIMIT_MEMLOCK hint.
type withoutHint struct{ err error }

func (e withoutHint) Error() string { return strings.Replace(e.err.Error(), memlockHint, "", 1) }
func (e withoutHint) Unwrap() error { return e.err }
