package fuseuring

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// A server stops in three steps, each done once however many goroutines
// ask for it:
//
//  1. stopQueues: the connection has ended (or startup failed). Every
//     queue's eventfd is written, which wakes its thread to close its ring,
//     and no ring is added after this.
//  2. Wait: waits for every queue thread and /dev/fuse reader to end, for
//     at most Options.ShutdownWait. A handler that has not returned by then
//     is named in Wait's error and not waited for.
//  3. closeDev: once every thread has ended (at once, or later when the
//     last stuck handler returns), the /dev/fuse fd and the eventfds are
//     closed and the queues' buffers unmapped: only after the connection is
//     gone, so the kernel never holds a buffer that is unmapped, and never
//     while a thread could still write to one of those fds.

// stopQueues wakes every queue thread so that it closes its ring, and
// marks the server as stopping. Safe to call any number of times, from
// any goroutine, before or after closeDev.
func (s *Server) stopQueues() {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if !s.stopping {
		s.stopping = true
		close(s.stopped)
	}
	if s.fdsClosed {
		return
	}
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	for _, q := range s.queues {
		unix.Write(q.stopFD, one)
	}
}

// Wait blocks until the server has started to stop (the file system is
// unmounted, its connection aborted, or startup failed) and every loop has
// ended, or Options.ShutdownWait has passed since the loops were told to
// end. It returns the first loop error, joined with an error naming each
// request still in its handler if it did not wait for all of them. Safe to
// call from several goroutines at once and more than once: every call
// returns the same result.
func (s *Server) Wait() error {
	<-s.stopped
	s.waitOnce.Do(func() { s.waitErr = s.awaitLoops() })
	return s.waitErr
}

// awaitLoops is Wait's bounded wait for the loops, run once.
func (s *Server) awaitLoops() error {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	wait := s.opts.ShutdownWait
	if wait <= 0 {
		wait = DefaultShutdownWait
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
		s.closeDev()
		return s.firstErr()
	case <-t.C:
	}
	// The handlers left hold their queues' buffers and fds: release
	// those when the last of them returns.
	go func() {
		<-done
		s.closeDev()
	}()
	stuck := s.inHandlers()
	err := fmt.Errorf("fuseuring: %d request(s) still in their file system handlers %v after the connection ended; not waiting for them: %s",
		len(stuck), wait, strings.Join(stuck, "; "))
	s.logf("%v", err)
	return errors.Join(s.firstErr(), err)
}

func (s *Server) firstErr() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.loopErr
}

// inHandlers describes every request now in a handler.
func (s *Server) inHandlers() []string {
	s.qmu.Lock()
	all := make([]*inflight, 0, len(s.queues)+len(s.dev))
	for _, q := range s.queues {
		all = append(all, &q.cur)
	}
	all = append(all, s.dev...)
	s.qmu.Unlock()
	var out []string
	for _, f := range all {
		if desc, ok := f.describe(); ok {
			out = append(out, desc)
		}
	}
	if len(out) == 0 {
		// Every handler returned in the meantime; a thread is ending.
		out = append(out, "none in a handler now (a queue thread is still ending)")
	}
	return out
}

// closeDev closes the /dev/fuse fd and the eventfds and unmaps the
// queues' buffers, once. Precondition: every queue thread has ended, or
// startup failed before any started.
func (s *Server) closeDev() {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.fdsClosed {
		return
	}
	if s.afterClose != nil {
		defer s.afterClose()
	}
	s.fdsClosed = true
	unix.Close(s.devFD)
	for _, r := range s.readers {
		unix.Close(r.blk)
		if r.nb >= 0 {
			unix.Close(r.nb)
		}
	}
	for _, q := range s.queues {
		unix.Close(q.stopFD)
		if q.mem != nil {
			unix.Munmap(q.mem)
			q.mem = nil
		}
	}
}

// inflight records the request a thread is handling, for the shutdown
// report. Written by its thread, read by Wait.
type inflight struct {
	unique atomic.Uint64 // 0: idle (the kernel numbers requests from 1)
	opcode atomic.Uint32
	node   atomic.Uint64
}

func (f *inflight) begin(h *fuse.InHeader) {
	f.opcode.Store(h.Opcode)
	f.node.Store(h.NodeId)
	f.unique.Store(h.Unique)
}

func (f *inflight) end() { f.unique.Store(0) }

// describe says which request f is handling, if any.
func (f *inflight) describe() (string, bool) {
	u := f.unique.Load()
	if u == 0 {
		return "", false
	}
	return fmt.Sprintf("%s (unique %d, node %d)", opName(f.opcode.Load()), u, f.node.Load()), true
}

// cpuRings counts one CPU's registered rings and how many of them are in
// a handler now.
type cpuRings struct {
	rings   atomic.Int32
	busy    atomic.Int32
	growing atomic.Bool // a ring is being added
}

// maxRingsPerCPU bounds the rings one CPU's queue can grow to (as go-fuse
// bounds its /dev/fuse readers at 16).
const maxRingsPerCPU = 16

// enter counts a handler entered on CPU qid. When it takes the CPU's last
// idle ring, another ring is started for that CPU in the background: the
// kernel hands a CPU's requests only to that CPU's entries, so without it a
// CPU whose handlers all block would leave its next callers waiting, where
// go-fuse's /dev/fuse path starts another reader. A request that arrives
// before the new ring has registered waits until some entry of the CPU
// commits (the kernel gives queued requests to committing entries only).
func (s *Server) enter(qid int) {
	c := &s.cpus[qid]
	if c.busy.Add(1) >= c.rings.Load() && c.rings.Load() < maxRingsPerCPU && c.growing.CompareAndSwap(false, true) {
		go func() {
			defer c.growing.Store(false)
			err := s.addRing(qid)
			if err != nil && !connectionEnding(err) {
				s.logf("fuseuring: every ring of CPU %d is in a handler; adding one: %v", qid, err)
			}
		}()
	}
}

// leave counts a handler returned on CPU qid.
func (s *Server) leave(qid int) { s.cpus[qid].busy.Add(-1) }

// errStopping is addRing's answer once the server stops.
var errStopping = errors.New("server is stopping")

// connectionEnding reports whether err only says that the server or its
// connection is going away: nothing to log.
func connectionEnding(err error) bool {
	return errors.Is(err, errStopping) || errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED)
}

// addRing starts one more ring for CPU qid and waits until it has
// registered its entries.
func (s *Server) addRing(qid int) error {
	_, ready, err := s.startQueue(qid)
	if err != nil {
		return err
	}
	if err := <-ready; err != nil {
		return err
	}
	s.cpus[qid].rings.Add(1)
	s.addedRings.Add(1)
	return nil
}

// startQueue creates a queue for CPU qid and starts its thread, which
// reports on ready once its entries are registered (or failed to).
func (s *Server) startQueue(qid int) (*queue, <-chan error, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("eventfd for queue %d: %w", qid, err)
	}
	s.qmu.Lock()
	if s.stopping {
		s.qmu.Unlock()
		unix.Close(efd)
		return nil, nil, errStopping
	}
	q := &queue{s: s, qid: qid, depth: s.opts.QueueDepth, payload: s.payloadSize(), stopFD: efd}
	s.queues = append(s.queues, q)
	s.wg.Add(1) // under qmu and before stopping: before any Wait's wg.Wait
	s.qmu.Unlock()
	ready := make(chan error, 1)
	go q.run(ready)
	return q, ready, nil
}
