package kernel

// Test-only access to the Conn's internals.

// deliverAll makes Read return every event the kernel delivers, so that a
// test sees what the kernel's filter let through rather than what Read
// would keep. Call it before the first Read.
func (c *Conn) deliverAll() { c.mask = eventAll }

// listenIgnoredProbe is Listen with a filtered listen request 4 bytes too
// long, which this kernel ignores the way a kernel older than 6.6 ignores
// any 8-byte request: the fallback path, on any kernel.
func listenIgnoredProbe(cfg Config) (*Conn, error) {
	return listenWith(cfg, procInputLen+4)
}

// pollForClose gives c what probeWake gives a socket that may not send
// itself a datagram: a receive timeout, and a Close that sends nothing.
func (c *Conn) pollForClose() error {
	c.rcvTimeout = pollInterval
	return c.setReceiveTimeout(pollInterval)
}
