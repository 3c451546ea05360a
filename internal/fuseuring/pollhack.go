package fuseuring

import (
	"bytes"
	"fmt"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// The poll hack. Go's runtime registers every file it opens with epoll,
// with a raw system call that keeps its P. On a FUSE file that call sends
// FUSE_POLL and waits for the answer; if the server runs in the same
// process and the runtime is stopping the world for the garbage collector
// meanwhile, the server never gets a P to answer: a deadlock. Once the
// server has answered one POLL with ENOSYS the kernel stops asking. So
// right after mounting we open a synthetic file and poll it. The name and
// inode number are go-fuse's (its Server serves the same file on
// /dev/fuse), so either side may see its requests.
const (
	pollHackName = ".go-fuse-epoll-hack"
	pollHackIno  = ^uint64(0)
	opPoll       = 40
)

// dispatchPollHack answers the synthetic file's requests; ok is false for
// every other request.
func dispatchPollHack(r *request) (st fuse.Status, n int, ok bool) {
	h := r.header()
	if h.NodeId != pollHackIno {
		if h.NodeId != fuse.FUSE_ROOT_ID || h.Opcode != opLookup ||
			!bytes.HasPrefix(r.payload, []byte(pollHackName+"\x00")) {
			return 0, 0, false
		}
	}
	attr := fuse.Attr{Ino: pollHackIno, Mode: syscall.S_IFREG | 0o644, Nlink: 1}
	switch h.Opcode {
	case opLookup:
		o, n := outStruct[fuse.EntryOut](r)
		o.NodeId, o.Attr = pollHackIno, attr
		return fuse.OK, n, true
	case opOpen:
		o, n := outStruct[fuse.OpenOut](r)
		o.Fh = pollHackIno
		return fuse.OK, n, true
	case opGetattr, opSetattr:
		o, n := outStruct[fuse.AttrOut](r)
		o.Attr = attr
		return fuse.OK, n, true
	case opGetxattr:
		return fuse.ENOATTR, 0, true
	case opPoll:
		return fuse.ENOSYS, 0, true
	case opAccess, opFlush, opRelease, opForget, opBatchForget:
		return fuse.OK, 0, true
	}
	return fuse.ERANGE, 0, true
}

// pollHack makes the kernel learn that this mount does not poll, before a
// Go program in this process opens a file on it.
func pollHack(mnt string) error {
	fd, err := unix.Open(filepath.Join(mnt, pollHackName), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("poll hack: %w", err)
	}
	defer unix.Close(fd)
	if _, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0); err != nil {
		return fmt.Errorf("poll hack: %w", err)
	}
	return nil
}
