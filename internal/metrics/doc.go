// Package metrics exports what the daemon does as Prometheus metrics: the
// engine's counters and move latency (and the other rows of its table of
// counters the daemon passes, such as the placements through systemd, with
// the latency of their D-Bus calls), and, for every destination cgroup
// the daemon has moved tasks into, the number of tasks and the CPU time
// and memory they use, read with containerd/cgroups v3 at scrape time.
//
// Nothing here runs on the event path: the engine keeps lock-free counters
// and the collectors read them (and the cgroup files) only when a scraper
// asks.
//
// Where it is served (ParseAddress): a TCP address given as a literal IP
// and port, or a Unix socket. Any IP is accepted: loopback
// ("127.0.0.1:9567") keeps the metrics on the machine, but any local user
// may read them there; another address ("0.0.0.0:9567", for a Prometheus
// server elsewhere) exposes them to the network, which the administrator
// asked for explicitly and must firewall. A Unix socket is created with
// mode 0600 and refuses peers that are not root (unixsock.PeerCheck), so
// that only root can read what the daemon knows about other users' tasks.
//
// What a client can cost (server.go, connlimit.go, respcache.go): at most
// maxConns connections are held (fewer under a small open-file limit); at
// the bound the one waiting longest for a request is closed to make room,
// or, if all are busy, the new one; each has a few seconds to send its
// request and to take its answer. At most one collection is made a
// second, and repeated scrapes within that second get the bytes of the
// first answer (a few kinds of answer are kept, bounded in size). A spare
// descriptor lets a scrape be accepted even when the daemon is out of
// descriptors. Connections dropped at the bound are reported, once a
// second at most, through Serve's errLog.
//
// Privileges: reading the cgroup statistics files needs no privilege;
// creating a socket under /run needs root.
//
// Concurrency: a Collector may be scraped concurrently; the Server serves
// each connection on its own goroutine and answers scrapes one at a time.
package metrics
