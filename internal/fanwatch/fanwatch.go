// Package fanwatch reports changes made to the names below a set of
// directory roots, learned from fanotify marks on the roots' file systems.
//
// A Watcher holds one fanotify group (FAN_CLASS_NOTIF with
// FAN_REPORT_DFID_NAME: every event names a directory by file handle and an
// entry in it) and one FAN_MARK_FILESYSTEM mark per file system that holds a
// root, so it sees every change on those file systems, wherever it is made
// (no per-directory marks to keep in step with the tree). Each event's
// directory handle is resolved to a path with open_by_handle_at and the
// path compared with the roots; events outside every root are dropped. The
// resolution is cached per handle, so an event in a directory seen before
// costs a map lookup; a directory moved into, out of or within a root
// clears the cache, since the cached directories below it moved with it.
//
// Events come a moment after the change that caused them: a Watcher tells
// what changed, not when. When the kernel's queue overflows (FAN_Q_OVERFLOW)
// events were lost and the caller must assume anything changed.
//
// Marking a file system needs CAP_SYS_ADMIN.
package fanwatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Mask is the set of events a Watcher asks for: entries created, removed
// or renamed, file contents written, attributes changed, and directories
// themselves removed or moved.
const Mask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO |
	unix.FAN_MODIFY | unix.FAN_ATTRIB | unix.FAN_CLOSE_WRITE |
	unix.FAN_DELETE_SELF | unix.FAN_MOVE_SELF | unix.FAN_ONDIR

// EntryMask are the events that change a directory's entries.
const EntryMask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO |
	unix.FAN_DELETE_SELF | unix.FAN_MOVE_SELF

// moveMask are the events of a directory moving.
const moveMask = unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO | unix.FAN_MOVE_SELF

// Change is one changed name below a root.
type Change struct {
	// Root is the index of the root (in the list given to New) the name
	// is below.
	Root int
	// Dir is the directory holding the name, relative to the root and
	// slash-separated: "" is the root itself.
	Dir string
	// Name is the changed entry of Dir; "" means Dir itself changed (its
	// attributes, or it was moved or removed; Dir is never "" then unless
	// the root itself changed).
	Name string
	// Entry is set when the change created, removed or renamed the name
	// (Dir's entries changed), unset when only the file's contents or
	// attributes did.
	Entry bool
}

// Stats counts what a Watcher read.
type Stats struct {
	Events    uint64 // fanotify events read
	Changes   uint64 // of which below a root (reported)
	Resolves  uint64 // directory handles resolved with open_by_handle_at
	Overflows uint64 // queue overflows (events lost)
}

// root is one watched directory.
type root struct {
	fd   int    // the mount fd for open_by_handle_at
	path string // as /proc/self/fd shows it, without a trailing slash
	fsid [2]int32
	mnt  uint64 // mount id: roots on one mount resolve handles alike
}

// hit is a cached resolution of a directory handle under one root.
type hit struct {
	root int
	rel  string
}

// Watcher reports changes below its roots. Run reads events; Close stops it.
type Watcher struct {
	f     *os.File
	roots []root

	cache map[string][]hit // by fsid+handle; an empty slice: outside every root

	events, changes, resolves, overflows atomic.Uint64

	mu      sync.Mutex
	running chan struct{} // closed when Run returns; nil before Run
	closed  bool
}

// maxCache bounds the resolved-handle cache; it is cleared when full.
const maxCache = 1 << 16

// New opens a fanotify group and marks the file system of every root.
// It fails with a message naming CAP_SYS_ADMIN when the caller lacks it.
func New(roots []string) (*Watcher, error) {
	if len(roots) == 0 {
		return nil, errors.New("fanwatch: no root")
	}
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_REPORT_DFID_NAME|unix.FAN_NONBLOCK|unix.FAN_CLOEXEC, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		if err == unix.EPERM {
			return nil, fmt.Errorf("fanotify_init: %w (watching LOWERDIR's file system needs CAP_SYS_ADMIN: run as root)", err)
		}
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	w := &Watcher{cache: make(map[string][]hit)}
	fail := func(err error) (*Watcher, error) {
		for _, r := range w.roots {
			unix.Close(r.fd)
		}
		unix.Close(fd)
		return nil, err
	}
	for _, p := range roots {
		r, err := openRoot(p)
		if err != nil {
			return fail(err)
		}
		w.roots = append(w.roots, r)
		if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, Mask, unix.AT_FDCWD, r.path); err != nil {
			if err == unix.EPERM {
				return fail(fmt.Errorf("fanotify_mark %s: %w (watching a file system needs CAP_SYS_ADMIN: run as root)", p, err))
			}
			return fail(fmt.Errorf("fanotify_mark %s: %w", p, err))
		}
	}
	w.f = os.NewFile(uintptr(fd), "fanotify")
	return w, nil
}

// openRoot opens p and learns its path, file system id and mount.
func openRoot(p string) (root, error) {
	// open_by_handle_at refuses an O_PATH mount fd.
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return root{}, fmt.Errorf("fanwatch: open %s: %w", p, err)
	}
	r := root{fd: fd}
	if r.path, err = fdPath(fd); err != nil {
		unix.Close(fd)
		return root{}, fmt.Errorf("fanwatch: %s: %w", p, err)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		unix.Close(fd)
		return root{}, fmt.Errorf("fanwatch: statfs %s: %w", p, err)
	}
	r.fsid = sfs.Fsid.Val
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx); err != nil {
		unix.Close(fd)
		return root{}, fmt.Errorf("fanwatch: statx %s: %w", p, err)
	}
	r.mnt = stx.Mnt_id
	return r, nil
}

// fdPath is the path of an open file as this process's mount namespace
// sees it, without a trailing slash but for "/".
func fdPath(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// Stats reports what the watcher has read so far. Safe to call any time.
func (w *Watcher) Stats() Stats {
	return Stats{Events: w.events.Load(), Changes: w.changes.Load(), Resolves: w.resolves.Load(), Overflows: w.overflows.Load()}
}

// Close stops Run, waits for it to return, and releases the fanotify group
// and the roots' fds. Safe to call more than once, and from any goroutine
// but the one running Run's callbacks.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	running := w.running
	w.mu.Unlock()
	err := w.f.Close()
	if running != nil {
		<-running
	}
	for _, r := range w.roots {
		unix.Close(r.fd)
	}
	return err
}

// Run reads events until Close, calling changes with the changes below the
// roots that each read brought (in the order the kernel queued them, never
// empty), and overflow when events were lost. Both run on Run's goroutine,
// one at a time. Run returns nil after Close, or the read error that
// stopped it.
func (w *Watcher) Run(changes func([]Change), overflow func()) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	if w.running != nil {
		w.mu.Unlock()
		return errors.New("fanwatch: Run called twice")
	}
	running := make(chan struct{})
	w.running = running
	w.mu.Unlock()
	defer close(running)
	buf := make([]byte, 64<<10)
	var out []Change
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("fanotify read: %w", err)
		}
		out = out[:0]
		lost := false
		out, lost = w.parse(buf[:n], out)
		if lost {
			overflow()
		}
		if len(out) > 0 {
			changes(out)
		}
		if n < len(buf)/2 {
			// The queue was drained: let events gather before the next
			// read, so that a busy file system costs one wake-up per
			// batch rather than per event. An event after a quiet spell
			// is still read at once.
			time.Sleep(batchWait)
		}
	}
}

// batchWait is how long Run lets events gather after draining the queue.
const batchWait = time.Millisecond

// Layout of the kernel's records (uapi linux/fanotify.h).
const (
	metadataLen   = 24 // struct fanotify_event_metadata
	infoHeaderLen = 4  // struct fanotify_event_info_header
	fsidLen       = 8  // __kernel_fsid_t in struct fanotify_event_info_fid
	handleHdrLen  = 8  // struct file_handle: handle_bytes, handle_type
)

// parse appends the changes of the events in buf to out; lost reports a
// queue overflow.
func (w *Watcher) parse(buf []byte, out []Change) (_ []Change, lost bool) {
	le := binary.NativeEndian
	for len(buf) >= metadataLen {
		evLen := int(le.Uint32(buf[0:4]))
		vers := buf[4]
		metaLen := int(le.Uint16(buf[6:8]))
		mask := le.Uint64(buf[8:16])
		fd := int32(le.Uint32(buf[16:20]))
		if evLen < metadataLen || evLen > len(buf) || metaLen < metadataLen || metaLen > evLen {
			return out, true // malformed: treat as lost events
		}
		ev := buf[:evLen]
		buf = buf[evLen:]
		if fd >= 0 {
			unix.Close(int(fd))
		}
		if vers != unix.FANOTIFY_METADATA_VERSION {
			lost = true
			continue
		}
		w.events.Add(1)
		if mask&unix.FAN_Q_OVERFLOW != 0 {
			w.overflows.Add(1)
			lost = true
			continue
		}
		out = w.event(mask, ev[metaLen:], out)
	}
	return out, lost
}

// event appends the change one event's info records describe.
func (w *Watcher) event(mask uint64, info []byte, out []Change) []Change {
	le := binary.NativeEndian
	for len(info) >= infoHeaderLen {
		typ := info[0]
		l := int(le.Uint16(info[2:4]))
		if l < infoHeaderLen || l > len(info) {
			return out
		}
		rec := info[:l]
		info = info[l:]
		if typ != unix.FAN_EVENT_INFO_TYPE_DFID_NAME {
			continue
		}
		body := rec[infoHeaderLen:]
		if len(body) < fsidLen+handleHdrLen {
			continue
		}
		var fsid [2]int32
		fsid[0] = int32(le.Uint32(body[0:4]))
		fsid[1] = int32(le.Uint32(body[4:8]))
		hb := int(le.Uint32(body[8:12]))
		htype := int32(le.Uint32(body[12:16]))
		if hb < 0 || fsidLen+handleHdrLen+hb > len(body) {
			continue
		}
		key := body[:fsidLen+handleHdrLen+hb]
		handle := body[fsidLen+handleHdrLen : fsidLen+handleHdrLen+hb]
		name := body[fsidLen+handleHdrLen+hb:]
		if i := indexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		hits := w.resolve(key, fsid, htype, handle)
		entry := mask&EntryMask != 0
		for _, h := range hits {
			c := Change{Root: h.root, Dir: h.rel, Name: string(name), Entry: entry}
			if c.Name == "." {
				c.Name = ""
			}
			out = append(out, c)
			w.changes.Add(1)
		}
		if len(hits) > 0 && mask&unix.FAN_ONDIR != 0 && mask&moveMask != 0 {
			// A directory moved into, out of or within a root: the cached
			// paths of the directories below it are wrong. (A move that
			// stays outside every root changes no answer; a removed
			// directory's handle is never reused.)
			clear(w.cache)
		}
	}
	return out
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// resolve maps a directory handle to the roots it is below and its path
// relative to each, caching the answer.
func (w *Watcher) resolve(key []byte, fsid [2]int32, htype int32, handle []byte) []hit {
	if hits, ok := w.cache[string(key)]; ok {
		return hits
	}
	var hits []hit
	var done []uint64 // mounts already resolved on
	for i := range w.roots {
		r := &w.roots[i]
		if r.fsid != fsid || contains(done, r.mnt) {
			continue
		}
		done = append(done, r.mnt)
		w.resolves.Add(1)
		p, ok := w.handlePath(r.fd, htype, handle)
		if !ok {
			continue
		}
		for j := range w.roots {
			o := &w.roots[j]
			if o.mnt != r.mnt {
				continue
			}
			if rel, ok := below(o.path, p); ok {
				hits = append(hits, hit{root: j, rel: rel})
			}
		}
	}
	if len(w.cache) >= maxCache {
		clear(w.cache)
	}
	if hits == nil {
		hits = []hit{}
	}
	w.cache[string(key)] = hits
	return hits
}

func contains(s []uint64, v uint64) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// handlePath opens a file handle on the mount of mountFD and returns the
// path it has there; ok is false when it is gone or unreachable.
func (w *Watcher) handlePath(mountFD int, htype int32, handle []byte) (string, bool) {
	fd, err := unix.OpenByHandleAt(mountFD, unix.NewFileHandle(htype, handle), unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return "", false
	}
	defer unix.Close(fd)
	p, err := fdPath(fd)
	if err != nil || !strings.HasPrefix(p, "/") || strings.HasSuffix(p, " (deleted)") {
		return "", false
	}
	return p, true
}

// below reports whether p is root or below it, and p relative to root.
func below(root, p string) (string, bool) {
	if p == root {
		return "", true
	}
	if root == "/" {
		return p[1:], true
	}
	if strings.HasPrefix(p, root) && p[len(root)] == '/' {
		return p[len(root)+1:], true
	}
	return "", false
}
