package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, o options)
	}{
		{"defaults", nil, func(t *testing.T, o options) {
			if o.config != "/etc/cgrules.conf" || o.configDir != "/etc/cgrules.d" || o.cgroupRoot != "/" || o.nodaemon {
				t.Errorf("defaults: %+v", o)
			}
		}},
		{"bundled short flags", []string{"-nvvv"}, func(t *testing.T, o options) {
			if !o.nodaemon || o.verbosity != 3 {
				t.Errorf("got nodaemon=%v verbosity=%d", o.nodaemon, o.verbosity)
			}
		}},
		{"debug is -nvvv -f -", []string{"-d"}, func(t *testing.T, o options) {
			if !o.nodaemon || o.verbosity != 3 || o.logfile != "-" {
				t.Errorf("got %+v", o)
			}
		}},
		{"debug keeps an explicit log file", []string{"-d", "-f", "/tmp/x.log"}, func(t *testing.T, o options) {
			if o.logfile != "/tmp/x.log" {
				t.Errorf("logfile %q", o.logfile)
			}
		}},
		{"logfile attached", []string{"-f/var/log/x"}, func(t *testing.T, o options) {
			if o.logfile != "/var/log/x" {
				t.Errorf("logfile %q", o.logfile)
			}
		}},
		{"logfile long with =", []string{"--logfile=-"}, func(t *testing.T, o options) {
			if o.logfile != "-" {
				t.Errorf("logfile %q", o.logfile)
			}
		}},
		{"syslog default facility", []string{"-s"}, func(t *testing.T, o options) {
			if !o.syslog || o.facility != "D" {
				t.Errorf("syslog=%v facility=%q", o.syslog, o.facility)
			}
		}},
		{"syslog local3 attached", []string{"-s3", "-n"}, func(t *testing.T, o options) {
			if !o.syslog || o.facility != "3" || !o.nodaemon {
				t.Errorf("syslog=%v facility=%q", o.syslog, o.facility)
			}
		}},
		{"reclassify flags", []string{"--reclassify-on-reload", "-n"}, func(t *testing.T, o options) {
			if !o.reclassOnRel || o.reclassify {
				t.Errorf("reclassOnRel %v, reclassify %v", o.reclassOnRel, o.reclassify)
			}
		}},
		{"settings files, in order", []string{"--check-settings=/a", "--check-settings", "/b"}, func(t *testing.T, o options) {
			if strings.Join(o.settings, " ") != "/a /b" {
				t.Errorf("settings %q", o.settings)
			}
		}},
		{"syslog long", []string{"--syslog=D"}, func(t *testing.T, o options) {
			if !o.syslog || o.facility != "D" {
				t.Errorf("facility %q", o.facility)
			}
		}},
		{"quiet lowers verbosity", []string{"-v", "-q", "-q"}, func(t *testing.T, o options) {
			if o.verbosity != -1 {
				t.Errorf("verbosity %d", o.verbosity)
			}
		}},
		{"socket owner accepted", []string{"-u", "root", "-g", "cgred"}, func(t *testing.T, o options) {
			if o.socketUser != "root" || o.socketGroup != "cgred" {
				t.Errorf("got %q %q", o.socketUser, o.socketGroup)
			}
		}},
		{"root cleaned", []string{"--cgroup-root", "//"}, func(t *testing.T, o options) {
			if o.cgroupRoot != "/" {
				t.Errorf("cgroupRoot %q, want /", o.cgroupRoot)
			}
		}},
		{"root cleaned inside", []string{"--cgroup-root", "/a//b/./c/"}, func(t *testing.T, o options) {
			if o.cgroupRoot != "/a/b/c" {
				t.Errorf("cgroupRoot %q, want /a/b/c", o.cgroupRoot)
			}
		}},
		{"empty values of unset service variables mean the defaults", []string{"--config=", "--logfile=", "--socket-user=", "--socket-group="}, func(t *testing.T, o options) {
			if o.config != "/etc/cgrules.conf" || o.logfile != "" || o.socketUser != "" || o.socketGroup != "" {
				t.Errorf("got config %q logfile %q socket %q:%q", o.config, o.logfile, o.socketUser, o.socketGroup)
			}
		}},
		{"config and root", []string{"-c", "r.conf", "--config-dir", "d", "--cgroup-root=/x/y", "--pidfile", "p"}, func(t *testing.T, o options) {
			if o.config != "r.conf" || o.configDir != "d" || o.cgroupRoot != "/x/y" || o.pidfile != "p" {
				t.Errorf("got %+v", o)
			}
		}},
		{"netlink buffer with suffix", []string{"--netlink-buffer", "4M"}, func(t *testing.T, o options) {
			if o.netlinkBuf != 4<<20 {
				t.Errorf("buffer %d", o.netlinkBuf)
			}
		}},
		{"netlink buffer default", nil, func(t *testing.T, o options) {
			if o.netlinkBuf != kernel.DefaultReceiveBuffer {
				t.Errorf("buffer %d, want kernel.DefaultReceiveBuffer %d", o.netlinkBuf, kernel.DefaultReceiveBuffer)
			}
		}},
		{"events default", nil, func(t *testing.T, o options) {
			if o.events != eventsAuto || o.bpfRing != 0 || o.bpfBTF != "" {
				t.Errorf("events %q, ring %d, btf %q", o.events, o.bpfRing, o.bpfBTF)
			}
		}},
		{"events bpf", []string{"--events=bpf"}, func(t *testing.T, o options) {
			if o.events != eventsBPF {
				t.Errorf("events %q", o.events)
			}
		}},
		{"events netlink", []string{"--events", "netlink"}, func(t *testing.T, o options) {
			if o.events != eventsNetlink {
				t.Errorf("events %q", o.events)
			}
		}},
		{"test knobs of the BPF source", []string{"--bpf-ring-buffer=4K", "--bpf-kernel-btf", "/dev/null"}, func(t *testing.T, o options) {
			if o.bpfRing != 4096 || o.bpfBTF != "/dev/null" {
				t.Errorf("ring %d, btf %q", o.bpfRing, o.bpfBTF)
			}
		}},
		{"default slice", nil, func(t *testing.T, o options) {
			if o.slice != 100*time.Microsecond {
				t.Errorf("slice %v", o.slice)
			}
		}},
		{"slice", []string{"--sched-slice", "2ms"}, func(t *testing.T, o options) {
			if o.slice != 2*time.Millisecond {
				t.Errorf("slice %v", o.slice)
			}
		}},
		{"slice off", []string{"--sched-slice=0"}, func(t *testing.T, o options) {
			if o.slice != 0 {
				t.Errorf("slice %v", o.slice)
			}
		}},
		{"default socket", nil, func(t *testing.T, o options) {
			if o.socket != "/var/run/cgred.socket" {
				t.Errorf("socket %q", o.socket)
			}
		}},
		{"socket path", []string{"--socket", "/tmp/s"}, func(t *testing.T, o options) {
			if o.socket != "/tmp/s" {
				t.Errorf("socket %q", o.socket)
			}
		}},
		{"no socket", []string{"--socket="}, func(t *testing.T, o options) {
			if o.socket != "" {
				t.Errorf("socket %q", o.socket)
			}
		}},
		{"systemd defaults", nil, func(t *testing.T, o options) {
			if o.systemd != "auto" || o.systemdBus != "" {
				t.Errorf("systemd %q bus %q, want auto and the default bus", o.systemd, o.systemdBus)
			}
		}},
		{"systemd on with a bus", []string{"--systemd=on", "--systemd-bus", "unix:path=/tmp/x/private"}, func(t *testing.T, o options) {
			if o.systemd != "on" || o.systemdBus != "unix:path=/tmp/x/private" {
				t.Errorf("systemd %q bus %q", o.systemd, o.systemdBus)
			}
		}},
		{"systemd off", []string{"--systemd", "off", "--systemd-bus="}, func(t *testing.T, o options) {
			if o.systemd != "off" || o.systemdBus != "" {
				t.Errorf("systemd %q bus %q", o.systemd, o.systemdBus)
			}
		}},
		{"explain", []string{"--explain", "--user", "alice", "--group=staff", "--process", "/bin/sh"}, func(t *testing.T, o options) {
			if !o.explain || o.exUser != "alice" || o.exGroup != "staff" || o.exProc != "/bin/sh" {
				t.Errorf("got %+v", o)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseArgs(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}

func TestParseArgsErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown short", []string{"-x"}, "unknown option -x"},
		{"unknown long", []string{"--frobnicate"}, "unknown option --frobnicate"},
		{"missing value", []string{"-f"}, "needs a value"},
		{"bad facility", []string{"-s9"}, "unknown syslog facility"},
		{"flag with value", []string{"--nodaemon=yes"}, "takes no value"},
		{"stray argument", []string{"extra"}, "unexpected argument"},
		{"explain without user", []string{"--explain"}, "needs --user"},
		{"user without explain", []string{"--user", "x"}, "go with --explain"},
		{"relative root", []string{"--cgroup-root", "x"}, "absolute"},
		{"dotdot root", []string{"--cgroup-root", "/a/../b"}, "must not contain"},
		{"tiny buffer", []string{"--netlink-buffer", "10"}, "at least 4096"},
		{"bad size", []string{"--netlink-buffer", "lots"}, "invalid size"},
		{"bad slice", []string{"--sched-slice", "fast"}, "invalid duration"},
		{"slice too short", []string{"--sched-slice", "10us"}, "out of range"},
		{"slice too long", []string{"--sched-slice", "1s"}, "out of range"},
		{"bad systemd mode", []string{"--systemd=yes"}, "want auto, on or off"},
		{"systemd bus not unix", []string{"--systemd-bus", "tcp:host=localhost,port=1"}, "only unix:path=FILE"},
		{"systemd bus relative", []string{"--systemd-bus=unix:path=private"}, "must be absolute"},
		{"systemd bus a plain path", []string{"--systemd-bus=/run/systemd/private"}, "only unix:path=FILE"},
		{"systemd bus with systemd off", []string{"--systemd=off", "--systemd-bus=unix:path=/run/x"}, "not off"},
		{"unknown source", []string{"--events", "ebpf"}, "want auto, bpf or netlink"},
		{"no source", []string{"--events="}, "want auto, bpf or netlink"},
		{"ring not a power of two", []string{"--bpf-ring-buffer", "5000"}, "power of two"},
		{"ring too small", []string{"--bpf-ring-buffer", "1K"}, "power of two"},
		{"empty settings file", []string{"--check-settings="}, "want a file name"},
		{"settings with check", []string{"--check-settings=/etc/default/cgred", "--check"}, "goes alone"},
		{"reclassify with status", []string{"--reclassify", "--status"}, "are exclusive"},
		{"check with explain", []string{"--check", "--explain", "--user", "x"}, "are exclusive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseArgs(tc.args)
			if err == nil || !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a usage error containing %q", err, tc.want)
			}
		})
	}
}

func TestLogLevels(t *testing.T) {
	tests := []struct {
		env       string
		verbosity int
		want      logrus.Level
	}{
		{"", 0, logrus.ErrorLevel},
		{"", 1, logrus.WarnLevel},
		{"", 2, logrus.InfoLevel},
		{"", 3, logrus.DebugLevel},
		{"", 9, logrus.DebugLevel},
		{"", -1, logrus.FatalLevel},
		{"INFO", 0, logrus.InfoLevel},
		{"debug", -1, logrus.InfoLevel},
		{"4", 0, logrus.DebugLevel},
	}
	for _, tc := range tests {
		base, err := baseLevel(tc.env)
		if err != nil {
			t.Fatal(err)
		}
		if got := effectiveLevel(base, tc.verbosity); got != tc.want {
			t.Errorf("CGROUP_LOGLEVEL=%q verbosity %d: level %v, want %v", tc.env, tc.verbosity, got, tc.want)
		}
	}
	if _, err := baseLevel("LOUD"); err == nil {
		t.Error("CGROUP_LOGLEVEL=LOUD accepted")
	}
}
