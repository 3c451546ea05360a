package fusekit

import "sync"

// Handles is the table of open file and directory handles: the kernel
// names a handle by the number Add returned (never 0) until it releases
// it. The zero Handles is ready to use.
type Handles[H any] struct {
	mu   sync.Mutex
	m    map[uint64]H
	next uint64
}

// Add stores h and returns its number.
func (t *Handles[H]) Add(h H) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[uint64]H)
	}
	t.next++
	t.m[t.next] = h
	return t.next
}

// Get returns the handle numbered fh; ok is false if there is none.
func (t *Handles[H]) Get(fh uint64) (h H, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok = t.m[fh]
	return h, ok
}

// Drop removes the handle numbered fh and returns it.
func (t *Handles[H]) Drop(fh uint64) (h H, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok = t.m[fh]
	delete(t.m, fh)
	return h, ok
}

// DropAll empties the table and returns what it held (the handles the
// kernel never released, after an aborted connection).
func (t *Handles[H]) DropAll() []H {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]H, 0, len(t.m))
	for _, h := range t.m {
		out = append(out, h)
	}
	t.m = nil
	return out
}
