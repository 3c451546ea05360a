package fuseuring

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// FUSE opcodes (include/uapi/linux/fuse.h, enum fuse_opcode).
const (
	opLookup      = 1
	opForget      = 2
	opGetattr     = 3
	opSetattr     = 4
	opReadlink    = 5
	opSymlink     = 6
	opMknod       = 8
	opMkdir       = 9
	opUnlink      = 10
	opRmdir       = 11
	opRename      = 12
	opLink        = 13
	opOpen        = 14
	opRead        = 15
	opWrite       = 16
	opStatfs      = 17
	opRelease     = 18
	opFsync       = 20
	opSetxattr    = 21
	opGetxattr    = 22
	opListxattr   = 23
	opRemovexattr = 24
	opFlush       = 25
	opInit        = 26
	opOpendir     = 27
	opReaddir     = 28
	opReleasedir  = 29
	opFsyncdir    = 30
	opGetlk       = 31
	opSetlk       = 32
	opSetlkw      = 33
	opAccess      = 34
	opCreate      = 35
	opInterrupt   = 36
	opDestroy     = 38
	opBatchForget = 42
	opFallocate   = 43
	opReaddirplus = 44
	opRename2     = 45
	opLseek       = 46
	opCopyRange   = 47
	opTmpfile     = 51
	opCount       = 64
)

// opNotifyReply is FUSE_NOTIFY_REPLY: the kernel's answer to a
// NOTIFY_RETRIEVE, which over io_uring arrives on a ring.
const opNotifyReply = 41

// opNames names the opcodes this package serves, for logs.
var opNames = [opCount]string{
	opLookup: "LOOKUP", opForget: "FORGET", opGetattr: "GETATTR", opSetattr: "SETATTR",
	opReadlink: "READLINK", opSymlink: "SYMLINK", opMknod: "MKNOD", opMkdir: "MKDIR",
	opUnlink: "UNLINK", opRmdir: "RMDIR", opRename: "RENAME", opLink: "LINK",
	opOpen: "OPEN", opRead: "READ", opWrite: "WRITE", opStatfs: "STATFS",
	opRelease: "RELEASE", opFsync: "FSYNC", opSetxattr: "SETXATTR", opGetxattr: "GETXATTR",
	opListxattr: "LISTXATTR", opRemovexattr: "REMOVEXATTR", opFlush: "FLUSH", opInit: "INIT",
	opOpendir: "OPENDIR", opReaddir: "READDIR", opReleasedir: "RELEASEDIR", opFsyncdir: "FSYNCDIR",
	opGetlk: "GETLK", opSetlk: "SETLK", opSetlkw: "SETLKW", opAccess: "ACCESS",
	opCreate: "CREATE", opInterrupt: "INTERRUPT", opDestroy: "DESTROY", opNotifyReply: "NOTIFY_REPLY",
	opBatchForget: "BATCH_FORGET", opFallocate: "FALLOCATE", opReaddirplus: "READDIRPLUS",
	opRename2: "RENAME2", opLseek: "LSEEK", opCopyRange: "COPY_FILE_RANGE", opTmpfile: "TMPFILE",
}

// opName names opcode op, for logs.
func opName(op uint32) string {
	if op < opCount && opNames[op] != "" {
		return opNames[op]
	}
	return fmt.Sprintf("opcode %d", op)
}

// inHeaderSize is sizeof(struct fuse_in_header).
const inHeaderSize = int(unsafe.Sizeof(fuse.InHeader{}))

// outHeaderSize is sizeof(struct fuse_out_header).
const outHeaderSize = 16

// opInSize is the size of each opcode's fixed argument (the kernel's
// in_args[0]) at the protocol minor this server negotiates (28, without
// FUSE_SETXATTR_EXT). Over /dev/fuse names and data follow it; over the
// ring it sits in op_in and names and data are in the payload.
var opInSize = [opCount]int{
	opForget: 8, opGetattr: 16, opSetattr: 88, opMknod: 16, opMkdir: 8,
	opRename: 8, opLink: 8, opOpen: 8, opRead: 40, opWrite: 40,
	opRelease: 24, opFsync: 16, opSetxattr: 8, opGetxattr: 8, opListxattr: 8,
	opFlush: 24, opInit: 64, opOpendir: 8, opReaddir: 40, opReleasedir: 24,
	opFsyncdir: 16, opAccess: 8, opCreate: 16, opInterrupt: 8,
	opBatchForget: 8, opFallocate: 32, opReaddirplus: 40, opRename2: 16,
	opLseek: 24, opGetlk: 48, opSetlk: 48, opSetlkw: 48, opCopyRange: 56,
	opTmpfile: 16,
}

// maxInStruct is the room for a fuse_in_header and the largest fixed
// argument a request can carry over the ring.
const maxInStruct = inHeaderSize + hdrOpInSize

// noReply reports the opcodes the kernel expects no answer to.
func noReply(op uint32) bool {
	return op == opForget || op == opBatchForget || op == opInterrupt
}

// request is one decoded FUSE request, independent of the transport.
type request struct {
	// in holds the fuse_in_header and then the opcode's fixed argument,
	// zero-padded, 8-byte aligned so go-fuse's In structs can overlay it.
	in []byte
	// payload holds what follows the fixed argument: names, data.
	payload []byte
	// out receives the reply's arguments (without fuse_out_header). Over
	// the ring it is the same memory as payload: handlers copy what they
	// need from payload before writing out.
	out []byte
}

func (r *request) header() *fuse.InHeader { return (*fuse.InHeader)(unsafe.Pointer(&r.in[0])) }

// names splits the payload into n NUL-terminated strings (copied).
func (r *request) names(n int) ([]string, bool) {
	rest := r.payload
	out := make([]string, 0, n)
	for range n {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return nil, false
		}
		out = append(out, string(rest[:i]))
		rest = rest[i+1:]
	}
	return out, true
}

// outStruct zeroes and returns the first size bytes of out for a reply struct.
func outStruct[T any](r *request) (*T, int) {
	size := int(unsafe.Sizeof(*new(T)))
	clear(r.out[:size])
	return (*T)(unsafe.Pointer(&r.out[0])), size
}

func inStruct[T any](r *request) *T { return (*T)(unsafe.Pointer(&r.in[0])) }

// dispatch runs one request against fs and returns the FUSE status and the
// number of reply bytes written to r.out.
func dispatch(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
	if st, n, ok := dispatchPollHack(r); ok {
		return st, n
	}
	h := r.header()
	switch h.Opcode {
	case opLookup, opUnlink, opRmdir, opRemovexattr:
		ns, ok := r.names(1)
		if !ok {
			return fuse.EINVAL, 0
		}
		switch h.Opcode {
		case opUnlink:
			return fs.Unlink(nil, h, ns[0]), 0
		case opRmdir:
			return fs.Rmdir(nil, h, ns[0]), 0
		case opRemovexattr:
			return fs.RemoveXAttr(nil, h, ns[0]), 0
		}
		o, n := outStruct[fuse.EntryOut](r)
		return fs.Lookup(nil, h, ns[0], o), n
	case opForget:
		fs.Forget(h.NodeId, inStruct[fuse.ForgetIn](r).Nlookup)
		return fuse.OK, 0
	case opBatchForget:
		count := int(binary.LittleEndian.Uint32(r.in[inHeaderSize:]))
		count = min(count, len(r.payload)/16)
		for i := range count {
			e := r.payload[16*i:]
			fs.Forget(binary.LittleEndian.Uint64(e), binary.LittleEndian.Uint64(e[8:]))
		}
		return fuse.OK, 0
	case opGetattr:
		o, n := outStruct[fuse.AttrOut](r)
		return fs.GetAttr(nil, inStruct[fuse.GetAttrIn](r), o), n
	case opSetattr:
		o, n := outStruct[fuse.AttrOut](r)
		return fs.SetAttr(nil, inStruct[fuse.SetAttrIn](r), o), n
	case opReadlink:
		data, st := fs.Readlink(nil, h)
		if !st.Ok() {
			return st, 0
		}
		return st, copy(r.out, data)
	case opSymlink, opRename, opRename2:
		ns, ok := r.names(2)
		if !ok {
			return fuse.EINVAL, 0
		}
		if h.Opcode == opSymlink {
			o, n := outStruct[fuse.EntryOut](r)
			return fs.Symlink(nil, h, ns[1], ns[0], o), n
		}
		return fs.Rename(nil, inStruct[fuse.RenameIn](r), ns[0], ns[1]), 0
	case opMknod, opMkdir, opLink, opCreate:
		ns, ok := r.names(1)
		if !ok {
			return fuse.EINVAL, 0
		}
		switch h.Opcode {
		case opMknod:
			o, n := outStruct[fuse.EntryOut](r)
			return fs.Mknod(nil, inStruct[fuse.MknodIn](r), ns[0], o), n
		case opMkdir:
			o, n := outStruct[fuse.EntryOut](r)
			return fs.Mkdir(nil, inStruct[fuse.MkdirIn](r), ns[0], o), n
		case opLink:
			o, n := outStruct[fuse.EntryOut](r)
			return fs.Link(nil, inStruct[fuse.LinkIn](r), ns[0], o), n
		}
		o, n := outStruct[fuse.CreateOut](r)
		return fs.Create(nil, inStruct[fuse.CreateIn](r), ns[0], o), n
	case opOpen, opOpendir:
		o, n := outStruct[fuse.OpenOut](r)
		if h.Opcode == opOpendir {
			return fs.OpenDir(nil, inStruct[fuse.OpenIn](r), o), n
		}
		return fs.Open(nil, inStruct[fuse.OpenIn](r), o), n
	case opRead:
		return doRead(fs, r)
	case opWrite:
		in := inStruct[fuse.WriteIn](r)
		if int(in.Size) > len(r.payload) {
			return fuse.EINVAL, 0
		}
		data := r.payload[:in.Size]
		written, st := fs.Writev(nil, in, [][]byte{data})
		if st == fuse.ENOSYS {
			written, st = fs.Write(nil, in, data)
		}
		o, n := outStruct[fuse.WriteOut](r)
		o.Size = written
		return st, n
	case opStatfs:
		o, n := outStruct[fuse.StatfsOut](r)
		return fs.StatFs(nil, h, o), n
	case opRelease:
		fs.Release(nil, inStruct[fuse.ReleaseIn](r))
		return fuse.OK, 0
	case opReleasedir:
		fs.ReleaseDir(inStruct[fuse.ReleaseIn](r))
		return fuse.OK, 0
	case opFsync:
		return fs.Fsync(nil, inStruct[fuse.FsyncIn](r)), 0
	case opFsyncdir:
		return fs.FsyncDir(nil, inStruct[fuse.FsyncIn](r)), 0
	case opFlush:
		return fs.Flush(nil, inStruct[fuse.FlushIn](r)), 0
	case opAccess:
		return fs.Access(nil, inStruct[fuse.AccessIn](r)), 0
	case opSetxattr:
		in := inStruct[fuse.SetXAttrIn](r)
		i := bytes.IndexByte(r.payload, 0)
		if i < 0 || len(r.payload)-i-1 < int(in.Size) {
			return fuse.EINVAL, 0
		}
		return fs.SetXAttr(nil, in, string(r.payload[:i]), r.payload[i+1:i+1+int(in.Size)]), 0
	case opGetxattr, opListxattr:
		return doXAttr(fs, r)
	case opReaddir, opReaddirplus:
		in := inStruct[fuse.ReadIn](r)
		size := min(int(in.Size), len(r.out))
		l := fuse.NewDirEntryList(r.out[:size], in.Offset)
		var st fuse.Status
		if h.Opcode == opReaddir {
			st = fs.ReadDir(nil, in, l)
		} else {
			st = fs.ReadDirPlus(nil, in, l)
		}
		if !st.Ok() {
			return st, 0
		}
		return st, len(l.Bytes())
	case opFallocate:
		return fs.Fallocate(nil, inStruct[fuse.FallocateIn](r)), 0
	case opLseek:
		o, n := outStruct[fuse.LseekOut](r)
		return fs.Lseek(nil, inStruct[fuse.LseekIn](r), o), n
	case opGetlk:
		o, n := outStruct[fuse.LkOut](r)
		return fs.GetLk(nil, inStruct[fuse.LkIn](r), o), n
	case opSetlk:
		return fs.SetLk(nil, inStruct[fuse.LkIn](r)), 0
	case opSetlkw:
		return fs.SetLkw(nil, inStruct[fuse.LkIn](r)), 0
	case opCopyRange:
		written, st := fs.CopyFileRange(nil, inStruct[fuse.CopyFileRangeIn](r))
		o, n := outStruct[fuse.WriteOut](r)
		o.Size = written
		return st, n
	case opTmpfile:
		o, n := outStruct[fuse.CreateOut](r)
		return fs.Tmpfile(nil, inStruct[fuse.CreateIn](r), o), n
	case opDestroy:
		return fuse.OK, 0
	}
	return fuse.ENOSYS, 0
}

func doRead(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
	in := inStruct[fuse.ReadIn](r)
	buf := r.out[:min(int(in.Size), len(r.out))]
	rr, st := fs.Read(nil, in, buf)
	if !st.Ok() {
		return st, 0
	}
	if rr == nil {
		return fuse.OK, 0
	}
	defer rr.Done()
	data, st := rr.Bytes(buf)
	if !st.Ok() {
		return st, 0
	}
	if len(data) > 0 && &data[0] != &buf[0] {
		return fuse.OK, copy(buf, data)
	}
	return fuse.OK, min(len(data), len(buf))
}

func doXAttr(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
	h := r.header()
	in := inStruct[fuse.GetXAttrIn](r)
	var name string
	if h.Opcode == opGetxattr {
		ns, ok := r.names(1)
		if !ok {
			return fuse.EINVAL, 0
		}
		name = ns[0]
	}
	dest := r.out[:min(int(in.Size), len(r.out))]
	var sz uint32
	var st fuse.Status
	if h.Opcode == opGetxattr {
		sz, st = fs.GetXAttr(nil, h, name, dest)
	} else {
		sz, st = fs.ListXAttr(nil, h, dest)
	}
	if in.Size == 0 {
		if st == fuse.ERANGE {
			st = fuse.OK
		}
		if !st.Ok() {
			return st, 0
		}
		o, n := outStruct[fuse.GetXAttrOut](r)
		o.Size = sz
		return st, n
	}
	if !st.Ok() {
		return st, 0
	}
	return st, min(int(sz), len(dest))
}
