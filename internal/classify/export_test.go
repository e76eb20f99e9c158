package classify

// Test-only views of the engine's state.

// HotLen is the size of the hot table.
func (e *Engine) HotLen() int { return e.hot.len() }

// len is the number of entries.
func (t *hotTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// get returns pid's entry.
func (t *hotTable) get(pid int32) (hotEntry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.m[pid]
	return h, ok
}
