// Package metrics exports what the daemon does as Prometheus metrics: the
// engine's counters and move latency, and, for every destination cgroup
// the daemon has moved tasks into, the number of tasks and the CPU time
// and memory they use, read with containerd/cgroups v3 at scrape time.
//
// Nothing here runs on the event path: the engine keeps lock-free counters
// and the collectors read them (and the cgroup files) only when a scraper
// asks. The server listens on a loopback TCP address or a Unix socket; a
// Unix socket is created with mode 0600 and refuses peers that are not
// root (SO_PEERCRED), so that only root can read what the daemon knows
// about other users' tasks.
//
// Privileges: reading the cgroup statistics files needs no privilege;
// creating a socket under /run needs root.
//
// Concurrency: a Collector may be scraped concurrently; the Server serves
// each scrape on its own goroutine.
package metrics
