package main

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"

	"github.com/sirupsen/logrus"

	"github.com/cgrulesengd/cgrulesengd/internal/proc"
	"github.com/cgrulesengd/cgrulesengd/internal/sticky"
)

// exitSocketOwner is the exit status for an unknown -u/-g name, libcgroup's.
const exitSocketOwner = 3

// errSocketOwner marks an unknown --socket-user or --socket-group.
var errSocketOwner = errors.New("unknown socket owner")

// socketOwner resolves -u and -g (through NSS) to the ids the socket file
// is given; -1 keeps the daemon's own. A name is looked up first; a number
// that names no user (group) is taken as the id itself.
func socketOwner(o *options) (uid, gid int, err error) {
	uid, err = resolveID("--socket-user", o.socketUser, func(n string) (string, error) {
		u, err := user.Lookup(n)
		if err != nil {
			return "", err
		}
		return u.Uid, nil
	})
	if err != nil {
		return -1, -1, err
	}
	gid, err = resolveID("--socket-group", o.socketGroup, func(n string) (string, error) {
		g, err := user.LookupGroup(n)
		if err != nil {
			return "", err
		}
		return g.Gid, nil
	})
	if err != nil {
		return -1, -1, err
	}
	return uid, gid, nil
}

// resolveID looks name up (lookup returns the id as a decimal string);
// "" is -1, and a number that names nothing is the id itself.
func resolveID(flag, name string, lookup func(string) (string, error)) (int, error) {
	if name == "" {
		return -1, nil
	}
	id, err := lookup(name)
	if err != nil {
		id = name
	}
	n, perr := strconv.ParseUint(id, 10, 31)
	if perr != nil || strconv.FormatUint(n, 10) != id {
		return -1, fmt.Errorf("%w: %s %q: %v", errSocketOwner, flag, name, err)
	}
	return int(n), nil
}

// listenSticky opens the sticky socket (--socket; "" = none) served into the
// engine's marks.
func (d *daemon) listenSticky() (*sticky.Server, error) {
	o := &d.opt
	if o.socket == "" {
		d.log.Info("no sticky socket (--socket \"\"): cgexec and cgclassify --sticky cannot reach this daemon")
		return nil, nil
	}
	uid, gid, err := socketOwner(o)
	if err != nil {
		return nil, err
	}
	srv, err := sticky.Listen(sticky.Config{
		Path: o.socket, UID: uid, GID: gid,
		Marks: d.engine.Marks(), Procs: proc.NewFS(o.procRoot), Log: d.log,
	})
	if err != nil {
		return nil, err
	}
	d.log.WithFields(logrus.Fields{"path": o.socket, "uid": uid, "gid": gid}).Debug("sticky socket ready (-1: the daemon's own id)")
	return srv, nil
}
