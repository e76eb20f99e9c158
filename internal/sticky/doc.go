// Package sticky serves the sticky socket of libcgroup's cgexec and
// cgclassify: the Unix socket (DefaultPath, /var/run/cgred.socket, compiled
// into libcgroup) through which they ask the rules daemon to leave a process
// where they put it.
//
// Protocol (the clients cannot change): a client connects, writes a pid and
// a flags word (4 bytes each, native byte order: DecodeRequest), and reads
// Reply, "SUCCESS_STORE_PID" and a NUL. Flags 0 (plain cgexec): leave the
// process alone; 1 (cgexec --sticky, cgclassify --sticky): and the children
// it forks from now on; 2 (cgclassify --cancel-sticky): classify it normally
// again. A request that is not carried out gets no reply: the connection is
// closed and the client reports a failure (a client that finds no socket at
// all carries on as if it had succeeded).
//
// What this server adds to libcgroup's: clients are served by goroutines of
// its own, never by the netlink reader, at most Config.MaxClients at once
// (the others wait in the listen backlog), each within Config.Timeout from
// its connect, so a client that sends nothing, half a request, or leaves
// before the reply costs a goroutine for a second and nothing else. Peer
// credentials (SO_PEERCRED) decide who may mark what: root any process,
// another user (let in by the socket file's group) only its own processes
// (real, effective and saved uid), and the mark is told who made it
// (Marks.Mark's by), so that it is dropped once the process runs as
// someone else (a set-uid program it executes). Refusals are logged at warning level with
// the peer's uid and pid, rate-limited, and counted (Marks.Refused). A
// process is checked to be alive (not a zombie) before and after it is
// marked, so that a mark is never left for the next process given its pid;
// a thread id marks its process. The socket file is created atomically
// with mode 0660 and its owner (Config.UID, Config.GID), a stale one is
// replaced, a live one (another daemon) is an error (ErrInUse), and Close
// removes it.
//
// The marks themselves, and what they do to events, live in package
// classify (classify.Marks, which the daemon hands to Listen); this package
// only speaks the protocol and checks the client's right to ask.
//
// Privileges: creating the socket needs write access to its directory, and
// chown needs CAP_CHOWN for an owner other than the daemon's; reading other
// users' processes (/proc/PID/status, stat) needs nothing special. Unit
// tests run as any user on a temporary path.
//
// Concurrency: Listen starts the server's goroutines; Close stops them and
// waits. Config.Marks and Config.Procs are called from several goroutines
// at once.
package sticky
