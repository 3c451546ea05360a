package lower

// Read-ahead of listings (exclusive mode, through the gofer).
//
// A walk of a tree lists a directory, then looks up and lists each of its
// subdirectories in turn, each a gofer round trip that waits for the one
// before. Once a directory is listed, its subdirectories are therefore
// listed ahead of time with WalkOpenDir, several at once, each on a
// channel of its own: readAheadWorkers at most, and never more than the
// client has channels, so that the socket stays free for the requests the
// kernel is waiting on. A listing read ahead is kept, with the control FD
// its WalkOpenDir created, until the directory is listed or its FD needed
// (then it costs no round trip) or its parent is forgotten.
//
// What is kept is bounded: maxReadAheadDirs directories (each holds a host
// fd in the gofer) and maxReadAheadBytes of entries, counted as the size of
// their Entry values and names. Read-ahead stops while either is reached; a
// listing that would pass the byte bound when it arrives is dropped, and so
// is one that does not fit in one reply (a large directory is listed when
// it is read). Only exclusive mode reads ahead: there the lower does not
// change, so what was read ahead is what a listing would read later.
// Shared and notified access never do (daemon: notify implies shared).

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"overlayfs/lisafs"
)

// maxReadAheadBytes bounds the memory one branch spends on listings read
// ahead and not yet used.
const maxReadAheadBytes = 8 << 20

// maxReadAheadDirs bounds the directories one branch keeps read ahead and
// not yet used, each holding a control FD (a host fd in the gofer).
const maxReadAheadDirs = 512

// readAheadWorkers bounds the listings one branch reads ahead at once.
const readAheadWorkers = 4

// entryCost is what one entry of a listing read ahead counts against
// maxReadAheadBytes.
func entryCost(e *Entry) int { return int(unsafe.Sizeof(*e)) + len(e.Name) }

// readAhead is one branch's listings read ahead. Lock order: readAhead.mu
// before branch.closeMu.
type readAhead struct {
	sem chan struct{} // one token per listing in flight; nil: no read-ahead

	mu       sync.Mutex
	byParent map[*bnode]map[string]*aheadListing // in flight or kept
	pending  map[*bnode]map[string]struct{}      // waiting for a worker
	bytes    int                                 // cost of the kept listings
	dirs     int                                 // listings in flight or kept
	running  int                                 // goroutines at work
	closed   bool
	maxBytes int // maxReadAheadBytes, but for tests
	maxDirs  int // maxReadAheadDirs, but for tests
	wg       sync.WaitGroup
}

// aheadListing is the listing of one directory read ahead. Its fields are
// set under readAhead.mu before ready is closed, and not changed after.
type aheadListing struct {
	ready chan struct{}
	ok    bool        // the listing was read and fits
	fd    lisafs.FDID // control FD on the directory
	attr  Attr        // the directory's attributes as WalkOpenDir found it
	ents  []Entry
	cost  int
}

// init sets the bounds and how many listings may be in flight (0: none).
func (r *readAhead) init(workers int) {
	r.maxBytes, r.maxDirs = maxReadAheadBytes, maxReadAheadDirs
	if n := min(workers, readAheadWorkers); n > 0 {
		r.sem = make(chan struct{}, n)
	}
}

// full reports whether no listing may be asked for now.
// Preconditions: r.mu is held.
func (r *readAhead) full() bool {
	return r.closed || r.dirs >= r.maxDirs || r.bytes >= r.maxBytes
}

// start counts one goroutine at work.
// Preconditions: r.mu is held.
func (r *readAhead) start() {
	r.running++
	r.wg.Add(1)
}

// done ends one goroutine's work.
func (r *readAhead) done() {
	r.mu.Lock()
	r.running--
	r.mu.Unlock()
	r.wg.Done()
}

// readAheadBelow starts listing ahead the subdirectories among ents, just
// listed as dir's entries, in the background.
func (l *branch) readAheadBelow(dir *bnode, ents []Entry) {
	r := &l.ra
	if r.sem == nil || !l.listsInOne() {
		return
	}
	l.closeMu.Lock()
	from := dir.fd
	l.closeMu.Unlock()
	if from == 0 {
		return
	}
	var subdirs []string
	for i := range ents {
		if e := &ents[i]; e.HasAttr && e.Attr.Type() == unix.S_IFDIR {
			subdirs = append(subdirs, e.Name)
		}
	}
	if len(subdirs) == 0 {
		return
	}
	r.mu.Lock()
	if r.full() || r.pending[dir] != nil {
		r.mu.Unlock()
		return
	}
	if r.pending == nil {
		r.pending = make(map[*bnode]map[string]struct{})
	}
	waiting := make(map[string]struct{}, len(subdirs))
	for _, name := range subdirs {
		waiting[name] = struct{}{}
	}
	r.pending[dir] = waiting
	r.start()
	r.mu.Unlock()
	go func() {
		defer r.done()
		defer func() {
			r.mu.Lock()
			delete(r.pending, dir)
			r.mu.Unlock()
		}()
		for _, name := range subdirs {
			r.sem <- struct{}{} // wait for a free worker before reserving
			r.mu.Lock()
			if r.full() {
				r.mu.Unlock()
				<-r.sem
				return
			}
			_, listed := r.byParent[dir][name]
			if _, ok := waiting[name]; !ok || listed {
				// Listed meanwhile, by a listing of its own or read ahead.
				r.mu.Unlock()
				<-r.sem
				continue
			}
			delete(waiting, name)
			a := &aheadListing{ready: make(chan struct{})}
			if r.byParent == nil {
				r.byParent = make(map[*bnode]map[string]*aheadListing)
			}
			if r.byParent[dir] == nil {
				r.byParent[dir] = make(map[string]*aheadListing)
			}
			r.byParent[dir][name] = a
			r.dirs++
			r.start()
			r.mu.Unlock()
			go func() {
				defer r.done()
				defer func() { <-r.sem }()
				l.readAheadOne(dir, from, name, a)
			}()
		}
	}()
}

// readAheadOne lists dir's subdirectory name from dir's control FD from
// into a, already reserved in r.byParent, and keeps it there if it fits.
func (l *branch) readAheadOne(dir *bnode, from lisafs.FDID, name string, a *aheadListing) {
	r := &l.ra
	resp, err := l.c.WalkOpenDir(from, name, listBatch)
	var got aheadListing
	if err == nil && resp.End() {
		var acc listing
		if acc.add(direntStatEntries(resp.Dirents)) == nil {
			got = aheadListing{ok: true, fd: resp.Child.ControlFD, attr: attrOf(&resp.Child.Stat), ents: acc.all}
			for i := range got.ents {
				got.cost += entryCost(&got.ents[i])
			}
		}
	}
	r.mu.Lock()
	keep := got.ok && r.byParent[dir][name] == a && !r.closed && r.bytes+got.cost <= r.maxBytes
	if keep {
		l.closeMu.Lock()
		keep = !dir.forgotten
		l.closeMu.Unlock()
	}
	if keep {
		a.ok, a.fd, a.attr, a.ents, a.cost = true, got.fd, got.attr, got.ents, got.cost
		r.bytes += a.cost
	} else if r.byParent[dir][name] == a {
		r.unlink(dir, name)
	}
	close(a.ready)
	r.mu.Unlock()
	if err != nil {
		return
	}
	if !resp.End() {
		l.closeLater(resp.OpenFD)
	}
	if !keep {
		l.closeLater(resp.Child.ControlFD)
	}
}

// unlink removes the listing of parent's name from r.byParent, counting it
// out of r.dirs (its bytes are the caller's business).
// Preconditions: r.mu is held; the listing is there.
func (r *readAhead) unlink(parent *bnode, name string) {
	delete(r.byParent[parent], name)
	if len(r.byParent[parent]) == 0 {
		delete(r.byParent, parent)
	}
	r.dirs--
}

// takeReadAhead returns dir's listing if it was read ahead (waiting for it
// if it is in flight) and dir still is the directory it lists, and makes
// dir hold the FD read ahead with it (closing it if dir has one already).
func (l *branch) takeReadAhead(dir *bnode) ([]Entry, bool) {
	r := &l.ra
	if dir.parent == nil || r.sem == nil {
		return nil, false
	}
	r.mu.Lock()
	a := r.byParent[dir.parent][dir.name]
	if a == nil {
		// The caller lists it now: the read-ahead need not.
		delete(r.pending[dir.parent], dir.name)
	}
	r.mu.Unlock()
	if a == nil {
		return nil, false
	}
	<-a.ready // one round trip at most: the request is on its way
	r.mu.Lock()
	if !a.ok || r.byParent[dir.parent][dir.name] != a {
		r.mu.Unlock()
		return nil, false // dropped, or taken by another caller
	}
	r.unlink(dir.parent, dir.name)
	r.bytes -= a.cost
	r.mu.Unlock()
	cur := dir.Attr()
	if !SameFile(&a.attr, &cur) {
		l.closeLater(a.fd)
		return nil, false
	}
	l.holdFD(dir, a.fd)
	return a.ents, true
}

// adoptReadAhead gives directory n, not yet holding a control FD, the FD
// and listing read ahead for it, if any, and reports whether it did.
func (l *branch) adoptReadAhead(n *bnode) bool {
	if n.parent == nil || !n.IsDir() {
		return false
	}
	n.mu.Lock()
	gen := n.listGen
	n.mu.Unlock()
	ents, ok := l.takeReadAhead(n)
	if !ok {
		return false
	}
	if ents, kept := l.keepListing(n, gen, ents); kept && !l.shared {
		l.readAheadBelow(n, ents)
	}
	return true
}

// dropBelow drops the listings read ahead below parent, which was
// forgotten or changed; one in flight is dropped when it arrives.
func (r *readAhead) dropBelow(l *branch, parent *bnode) {
	r.mu.Lock()
	m := r.byParent[parent]
	var fds []lisafs.FDID
	for name, a := range m {
		if a.ok { // kept (ready closed); one in flight counts no bytes yet
			r.bytes -= a.cost
			fds = append(fds, a.fd)
		}
		r.unlink(parent, name)
	}
	r.mu.Unlock()
	for _, fd := range fds {
		l.closeLater(fd)
	}
}

// close stops reading ahead. The caller then closes the client, which ends
// any listing in flight, and calls wait.
func (r *readAhead) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// wait waits for every read-ahead goroutine to end.
func (r *readAhead) wait() { r.wg.Wait() }
