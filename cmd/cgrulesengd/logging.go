package main

import (
	"fmt"
	"io"
	"log/syslog"
	"os"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	lsyslog "github.com/sirupsen/logrus/hooks/syslog"
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
// closer releases the log file. warn receives problems the starting user
// should see even though the log may not reach them.
func newLogger(o *options, foreground bool, stdout, stderr io.Writer, warn func(string)) (*logrus.Logger, io.Closer, error) {
	log := logrus.New()
	log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: true})
	base, err := baseLevel(os.Getenv("CGROUP_LOGLEVEL"))
	if err != nil {
		return nil, nil, err
	}
	log.SetLevel(effectiveLevel(base, o.verbosity))
	log.SetOutput(io.Discard)
	var closer io.Closer = nopCloser{}
	if o.nolog {
		return log, closer, nil
	}
	switch o.logfile {
	case "":
	case "-":
		log.SetOutput(stdout)
	default:
		f, err := os.OpenFile(o.logfile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("opening log file: %w", err)
		}
		log.SetOutput(f)
		closer = f
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
			log.Warnf("syslog unavailable (%v): logging to standard error", err)
		default:
			warn(fmt.Sprintf("syslog unavailable (%v): the daemon logs nothing; use -f FILE", err))
		}
	}
	return log, closer, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
