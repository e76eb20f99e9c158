// Package depspin pins the chosen dependencies until real code imports them.
package depspin

import (
	_ "github.com/containerd/cgroups/v3"
	_ "github.com/containerd/cgroups/v3/cgroup1"
	_ "github.com/containerd/cgroups/v3/cgroup2"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/sirupsen/logrus"
	_ "github.com/sirupsen/logrus/hooks/syslog"
	_ "github.com/vishvananda/netlink/nl"
	_ "golang.org/x/sys/unix"
)
