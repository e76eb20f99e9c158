package main

import (
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/sirupsen/logrus"
	lsyslog "github.com/sirupsen/logrus/hooks/syslog"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/trust"
)

// baseLevel is the level before -v/-q: errors only, as libcgroup, unless
// CGROUP_LOGLEVEL says otherwise.
func baseLevel(env string) (logrus.Level, error) {
	switch strings.ToUpper(strings.TrimSpace(env)) {
	case "":
		return logrus.ErrorLevel, nil
	case "ERROR", "1":
		return logrus.ErrorLevel, nil
	case "WARNING", "WARN", "2":
		return logrus.WarnLevel, nil
	case "INFO", "3":
		return logrus.InfoLevel, nil
	case "DEBUG", "4":
		return logrus.DebugLevel, nil
	}
	return logrus.ErrorLevel, fmt.Errorf("CGROUP_LOGLEVEL=%q: want ERROR, WARNING, INFO or DEBUG", env)
}

func effectiveLevel(base logrus.Level, verbosity int) logrus.Level {
	l := int(base) + verbosity
	if l < int(logrus.FatalLevel) {
		l = int(logrus.FatalLevel)
	}
	if l > int(logrus.DebugLevel) {
		l = int(logrus.DebugLevel)
	}
	return logrus.Level(l)
}

// newLogger builds the daemon's logger from the options. The returned
// logOutput reopens and closes the log file. warn receives problems the
// starting user should see even though the log may not reach them.
func newLogger(o *options, foreground bool, stdout, stderr io.Writer, warn func(string)) (*logrus.Logger, *logOutput, error) {
	log := logrus.New()
	log.SetFormatter(boundedFormatter{&logrus.TextFormatter{FullTimestamp: true, DisableColors: true}})
	base, err := baseLevel(os.Getenv("CGROUP_LOGLEVEL"))
	if err != nil {
		return nil, nil, err
	}
	log.SetLevel(effectiveLevel(base, o.verbosity))
	log.SetOutput(io.Discard)
	out := &logOutput{log: log}
	if o.nolog {
		return log, out, nil
	}
	switch o.logfile {
	case "":
	case "-":
		log.SetOutput(stdout)
	default:
		out.path = o.logfile
		if os.Geteuid() == 0 {
			out.trust = &trust.Policy{}
		}
		f, err := openLog(out.path, out.trust)
		if err != nil {
			return nil, nil, err
		}
		log.SetOutput(f)
		out.f = f
	}
	if o.syslog || o.logfile == "" {
		prio := syslog.LOG_DAEMON
		if o.facility != "" && o.facility != "D" {
			n, _ := strconv.Atoi(o.facility)
			prio = syslog.LOG_LOCAL0 + syslog.Priority(n)<<3
		}
		hook, err := lsyslog.NewSyslogHook("", "", prio|syslog.LOG_INFO, "CGRE")
		switch {
		case err == nil:
			log.AddHook(hook)
		case o.syslog:
			return nil, nil, fmt.Errorf("connecting to syslog: %w", err)
		case foreground:
			// No syslog daemon (containers, minimal VMs): say so and keep
			// the messages on stderr rather than losing them.
			log.SetOutput(stderr)
			out.stderr = true
			log.Warnf("syslog unavailable (%v): logging to standard error", err)
		default:
			warn(fmt.Sprintf("syslog unavailable (%v): the daemon logs nothing; use -f FILE", err))
		}
	}
	return log, out, nil
}

// maxLogText bounds the message and each text field of a log line. The
// rules bound what they produce (PATH_MAX, NAME_MAX, cut quotes), but a log
// line also carries what tasks and the kernel say (a process name from a
// 128 KiB argument, an error naming two paths): no line may grow with them.
const maxLogText = 8 << 10

// boundedFormatter cuts the message and text fields longer than maxLogText,
// marking the cut, before the real formatter runs (for syslog too, whose
// hook formats with the logger's formatter).
type boundedFormatter struct{ logrus.Formatter }

func (f boundedFormatter) Format(e *logrus.Entry) ([]byte, error) {
	long := len(e.Message) > maxLogText
	for _, v := range e.Data {
		if len(logText(v)) > maxLogText {
			long = true
		}
	}
	if !long {
		return f.Formatter.Format(e)
	}
	c := *e
	c.Message = clipText(e.Message)
	c.Data = make(logrus.Fields, len(e.Data))
	for k, v := range e.Data {
		if t := logText(v); len(t) > maxLogText {
			v = clipText(t)
		}
		c.Data[k] = v
	}
	return f.Formatter.Format(&c)
}

// logText is the text of a field value that is text (strings and errors).
func logText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case error:
		return x.Error()
	}
	return ""
}

// clipText cuts s to maxLogText bytes at a character boundary and says how
// much was cut.
func clipText(s string) string {
	if len(s) <= maxLogText {
		return s
	}
	n := maxLogText
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + fmt.Sprintf("...[%d bytes cut]", len(s)-n)
}

// logOutput is the log file, when there is one.
type logOutput struct {
	log    *logrus.Logger
	path   string        // "" = no log file
	trust  *trust.Policy // nil: not checked (the daemon does not run as root)
	f      *os.File
	stderr bool // the log goes to standard error
}

// Reopen opens the log file again and switches the log to it, so that a
// log rotated by renaming (logrotate without copytruncate) continues in a
// new file. On failure the log stays on the old file.
func (o *logOutput) Reopen() error {
	if o.path == "" {
		return nil
	}
	f, err := openLog(o.path, o.trust)
	if err != nil {
		return err
	}
	// SetOutput takes the logger's lock, which every write holds: no
	// write is under way on the old file once it returns.
	o.log.SetOutput(f)
	old := o.f
	o.f = f
	return old.Close()
}

// Close closes the log file; the log goes nowhere afterwards.
func (o *logOutput) Close() error {
	if o.f == nil {
		return nil
	}
	o.log.SetOutput(io.Discard)
	err := o.f.Close()
	o.f = nil
	return err
}

// openLog opens the log file for appending. The daemon writes it as root,
// so a path that someone else prepared must not make it write elsewhere:
// the last component is not followed if it is a symbolic link (O_NOFOLLOW),
// a FIFO does not block the open (O_NONBLOCK, cleared afterwards), anything
// but a regular file is refused, and so is a file with other hard links (a
// link to /etc/shadow in /tmp is root-owned and not world-writable, so the
// trust check alone would not see it). With a policy, the file and every
// directory on its path must be trusted as the rules files are (package
// trust), checked through the open descriptor.
func openLog(name string, pol *trust.Policy) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0o640)
	if err != nil {
		switch {
		case errors.Is(err, unix.ELOOP):
			return nil, fmt.Errorf("opening log file %s: it is a symbolic link (refused: name the file itself)", name)
		case errors.Is(err, unix.ENXIO):
			// open(2) of a FIFO nobody reads, with O_NONBLOCK.
			return nil, fmt.Errorf("opening log file %s: not a regular file (a FIFO or a device): %w", name, unix.ENXIO)
		}
		return nil, fmt.Errorf("opening log file: %w", err)
	}
	fail := func(format string, args ...any) (*os.File, error) {
		f.Close()
		return nil, fmt.Errorf("opening log file %s: "+format, append([]any{name}, args...)...)
	}
	fi, err := f.Stat()
	if err != nil {
		return fail("%w", err)
	}
	if !fi.Mode().IsRegular() {
		return fail("not a regular file (%s)", fi.Mode().Type())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		return fail("refused: it has %d hard links", st.Nlink)
	}
	if pol != nil {
		if err := pol.Check(name, trust.MetaOf(fi)); err != nil {
			return fail("refused, not trusted: %w", err)
		}
	}
	if err := setBlocking(f); err != nil {
		return fail("%w", err)
	}
	return f, nil
}

// setBlocking clears O_NONBLOCK, which was only there for the open.
func setBlocking(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetNonblock(int(fd), false) }); err != nil {
		return err
	}
	return serr
}
