// Package fdreserve keeps a descriptor in reserve for a listening socket,
// so that the daemon can still accept a connection when it has run out of
// descriptors: the classic spare-descriptor trick. When accept(2) fails
// with EMFILE (or ENFILE), the connection stays in the kernel's queue and
// a plain accept loop can only wait; a Reserve then closes its spare (a
// descriptor on /dev/null), accepts the connection into the number that
// freed, and opens the spare again once a connection is done (Refill).
// This is what keeps `cgrulesengd --status` and /metrics answering when
// something has taken every other descriptor.
//
// Privileges: none (it opens /dev/null). Concurrency: a Reserve is safe for
// concurrent use; each listener should have its own, so that one
// listener's connection does not hold another's spare.
package fdreserve
