// Package unixsock creates the daemon's listening Unix stream sockets (the
// sticky socket of libcgroup's clients, the root-only status and metrics
// sockets), serves them with a bound on the clients served at once (Serve),
// tells who is at the other end of a connection (PeerCred), and turns away
// peers that are not root on the root-only sockets (PeerCheck, the one
// implementation of that check).
//
// Serve keeps a descriptor in reserve (package fdreserve), so that a
// client is still accepted and served when the daemon has run out of
// descriptors: `cgrulesengd --status` answers even then.
//
// Listen makes a socket file appear atomically with its final mode and
// owner: it binds under a temporary name in the same directory, sets both,
// and renames it over the path, so a client never finds the socket with
// other permissions. A socket file already at the path is probed with a
// connect: if some process accepts, another daemon serves it (ErrInUse,
// naming its pid); if nobody does, the file was left by a daemon that is
// gone and is replaced. Anything else at the path is never touched. Close
// removes the file only if it is still the one Listen created.
//
// Privileges: creating a socket in /run or /var/run and giving it another
// owner need root; otherwise none.
//
// Concurrency: a Listener is a *net.UnixListener (safe for concurrent use);
// a Server calls its handler on a goroutine per connection; both Closes may
// be called more than once, from any goroutine.
package unixsock
