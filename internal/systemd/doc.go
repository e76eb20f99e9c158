// Package systemd places tasks into transient scopes inside slices through
// a systemd service manager, over D-Bus (github.com/coreos/go-systemd/v22's
// dbus package on github.com/godbus/dbus/v5).
package systemd
