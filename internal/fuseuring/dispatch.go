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

// opName names opcode op, for logs.
func opName(op uint32) string {
	if op < opCount && ops[op].name != "" {
		return ops[op].name
	}
	return fmt.Sprintf("opcode %d", op)
}

// inHeaderSize is sizeof(struct fuse_in_header).
const inHeaderSize = int(unsafe.Sizeof(fuse.InHeader{}))

// outHeaderSize is sizeof(struct fuse_out_header).
const outHeaderSize = 16

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
	// cancel is closed when the kernel interrupts the request; nil over
	// the ring, where interrupts are not delivered.
	cancel <-chan struct{}
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

// opInSize is the size of opcode op's fixed argument (the kernel's
// in_args[0]) at the protocol minor this server negotiates (28, without
// FUSE_SETXATTR_EXT). Over /dev/fuse names and data follow it; over the
// ring it sits in op_in and names and data are in the payload.
func opInSize(op uint32) int {
	if op < opCount {
		return ops[op].inSize
	}
	return 0
}

// dispatch runs one request against fs and returns the FUSE status and the
// number of reply bytes written to r.out.
func dispatch(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
	if st, n, ok := dispatchPollHack(r); ok {
		return st, n
	}
	op := r.header().Opcode
	if op >= opCount || ops[op].serve == nil {
		return fuse.ENOSYS, 0
	}
	return ops[op].serve(fs, r)
}

// opSpec is how this server decodes and answers one opcode.
type opSpec struct {
	name   string
	inSize int // see opInSize
	serve  func(fs fuse.RawFileSystem, r *request) (fuse.Status, int)
}

// argSize is the size of a go-fuse In struct's fixed argument: the struct
// less its fuse_in_header.
func argSize[T any]() int { return int(unsafe.Sizeof(*new(T))) - inHeaderSize }

// Sizes of the kernel's fixed arguments where go-fuse's struct is longer
// (it serves later protocol minors with the same struct).
const (
	renameInSize      = 8 // fuse_rename_in: newdir
	setxattrInSize    = 8 // fuse_setxattr_in without FUSE_SETXATTR_EXT: size, flags
	batchForgetInSize = 8 // fuse_batch_forget_in: count, dummy
)

// ops is the opcode table: one row per opcode this server answers; the
// rest get ENOSYS.
var ops = [opCount]opSpec{
	opLookup: {"LOOKUP", 0, withName(func(fs fuse.RawFileSystem, r *request, name string) (fuse.Status, int) {
		o, n := outStruct[fuse.EntryOut](r)
		return fs.Lookup(r.cancel, r.header(), name, o), n
	})},
	opForget: {"FORGET", argSize[fuse.ForgetIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		fs.Forget(r.header().NodeId, inStruct[fuse.ForgetIn](r).Nlookup)
		return fuse.OK, 0
	}},
	opGetattr: {"GETATTR", argSize[fuse.GetAttrIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		o, n := outStruct[fuse.AttrOut](r)
		return fs.GetAttr(r.cancel, inStruct[fuse.GetAttrIn](r), o), n
	}},
	opSetattr: {"SETATTR", argSize[fuse.SetAttrIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		o, n := outStruct[fuse.AttrOut](r)
		return fs.SetAttr(r.cancel, inStruct[fuse.SetAttrIn](r), o), n
	}},
	opReadlink: {"READLINK", 0, func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		data, st := fs.Readlink(r.cancel, r.header())
		if !st.Ok() {
			return st, 0
		}
		return st, copy(r.out, data)
	}},
	opSymlink: {"SYMLINK", 0, withNames(func(fs fuse.RawFileSystem, r *request, name, target string) (fuse.Status, int) {
		o, n := outStruct[fuse.EntryOut](r)
		return fs.Symlink(r.cancel, r.header(), target, name, o), n
	})},
	opMknod: {"MKNOD", argSize[fuse.MknodIn](), withName(func(fs fuse.RawFileSystem, r *request, name string) (fuse.Status, int) {
		o, n := outStruct[fuse.EntryOut](r)
		return fs.Mknod(r.cancel, inStruct[fuse.MknodIn](r), name, o), n
	})},
	opMkdir: {"MKDIR", argSize[fuse.MkdirIn](), withName(func(fs fuse.RawFileSystem, r *request, name string) (fuse.Status, int) {
		o, n := outStruct[fuse.EntryOut](r)
		return fs.Mkdir(r.cancel, inStruct[fuse.MkdirIn](r), name, o), n
	})},
	opUnlink: {"UNLINK", 0, withName(func(fs fuse.RawFileSystem, r *request, name string) (fuse.Status, int) {
		return fs.Unlink(r.cancel, r.header(), name), 0
	})},
	opRmdir: {"RMDIR", 0, withName(func(fs fuse.RawFileSystem, r *request, name string) (fuse.Status, int) {
		return fs.Rmdir(r.cancel, r.header(), name), 0
	})},
	opRename:  {"RENAME", renameInSize, withNames(serveRename)},
	opRename2: {"RENAME2", argSize[fuse.RenameIn](), withNames(serveRename)},
	opLink: {"LINK", argSize[fuse.LinkIn](), withName(func(fs fuse.RawFileSystem, r *request, name string) (fuse.Status, int) {
		o, n := outStruct[fuse.EntryOut](r)
		return fs.Link(r.cancel, inStruct[fuse.LinkIn](r), name, o), n
	})},
	opOpen: {"OPEN", argSize[fuse.OpenIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		o, n := outStruct[fuse.OpenOut](r)
		return fs.Open(r.cancel, inStruct[fuse.OpenIn](r), o), n
	}},
	opRead:  {"READ", argSize[fuse.ReadIn](), doRead},
	opWrite: {"WRITE", argSize[fuse.WriteIn](), doWrite},
	opStatfs: {"STATFS", 0, func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		o, n := outStruct[fuse.StatfsOut](r)
		return fs.StatFs(r.cancel, r.header(), o), n
	}},
	opRelease: {"RELEASE", argSize[fuse.ReleaseIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		fs.Release(r.cancel, inStruct[fuse.ReleaseIn](r))
		return fuse.OK, 0
	}},
	opFsync: {"FSYNC", argSize[fuse.FsyncIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		return fs.Fsync(r.cancel, inStruct[fuse.FsyncIn](r)), 0
	}},
	opSetxattr:  {"SETXATTR", setxattrInSize, doSetXAttr},
	opGetxattr:  {"GETXATTR", argSize[fuse.GetXAttrIn](), doXAttr},
	opListxattr: {"LISTXATTR", argSize[fuse.GetXAttrIn](), doXAttr},
	opRemovexattr: {"REMOVEXATTR", 0, withName(func(fs fuse.RawFileSystem, r *request, name string) (fuse.Status, int) {
		return fs.RemoveXAttr(r.cancel, r.header(), name), 0
	})},
	opFlush: {"FLUSH", argSize[fuse.FlushIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		return fs.Flush(r.cancel, inStruct[fuse.FlushIn](r)), 0
	}},
	opInit: {"INIT", argSize[fuse.InitIn](), nil}, // answered before serving starts
	opOpendir: {"OPENDIR", argSize[fuse.OpenIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		o, n := outStruct[fuse.OpenOut](r)
		return fs.OpenDir(r.cancel, inStruct[fuse.OpenIn](r), o), n
	}},
	opReaddir: {"READDIR", argSize[fuse.ReadIn](), doReadDir},
	opReleasedir: {"RELEASEDIR", argSize[fuse.ReleaseIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		fs.ReleaseDir(inStruct[fuse.ReleaseIn](r))
		return fuse.OK, 0
	}},
	opFsyncdir: {"FSYNCDIR", argSize[fuse.FsyncIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		return fs.FsyncDir(r.cancel, inStruct[fuse.FsyncIn](r)), 0
	}},
	opGetlk: {"GETLK", argSize[fuse.LkIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		o, n := outStruct[fuse.LkOut](r)
		return fs.GetLk(r.cancel, inStruct[fuse.LkIn](r), o), n
	}},
	opSetlk: {"SETLK", argSize[fuse.LkIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		return fs.SetLk(r.cancel, inStruct[fuse.LkIn](r)), 0
	}},
	opSetlkw: {"SETLKW", argSize[fuse.LkIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		return fs.SetLkw(r.cancel, inStruct[fuse.LkIn](r)), 0
	}},
	opAccess: {"ACCESS", argSize[fuse.AccessIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		return fs.Access(r.cancel, inStruct[fuse.AccessIn](r)), 0
	}},
	opCreate: {"CREATE", argSize[fuse.CreateIn](), withName(func(fs fuse.RawFileSystem, r *request, name string) (fuse.Status, int) {
		o, n := outStruct[fuse.CreateOut](r)
		return fs.Create(r.cancel, inStruct[fuse.CreateIn](r), name, o), n
	})},
	opInterrupt: {"INTERRUPT", argSize[fuse.InterruptIn](), func(fuse.RawFileSystem, *request) (fuse.Status, int) {
		// Handlers here get no cancel channel: nothing to interrupt.
		return fuse.OK, 0
	}},
	opDestroy: {"DESTROY", 0, func(fuse.RawFileSystem, *request) (fuse.Status, int) { return fuse.OK, 0 }},
	// NOTIFY_REPLY answers go-fuse's InodeRetrieveCache; see
	// GoFuseMount.InodeRetrieveCache.
	opNotifyReply: {"NOTIFY_REPLY", 0, nil},
	opBatchForget: {"BATCH_FORGET", batchForgetInSize, func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		count := int(binary.LittleEndian.Uint32(r.in[inHeaderSize:]))
		count = min(count, len(r.payload)/16)
		for i := range count {
			e := r.payload[16*i:]
			fs.Forget(binary.LittleEndian.Uint64(e), binary.LittleEndian.Uint64(e[8:]))
		}
		return fuse.OK, 0
	}},
	opFallocate: {"FALLOCATE", argSize[fuse.FallocateIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		return fs.Fallocate(r.cancel, inStruct[fuse.FallocateIn](r)), 0
	}},
	opReaddirplus: {"READDIRPLUS", argSize[fuse.ReadIn](), doReadDir},
	opLseek: {"LSEEK", argSize[fuse.LseekIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		o, n := outStruct[fuse.LseekOut](r)
		return fs.Lseek(r.cancel, inStruct[fuse.LseekIn](r), o), n
	}},
	opCopyRange: {"COPY_FILE_RANGE", argSize[fuse.CopyFileRangeIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		written, st := fs.CopyFileRange(r.cancel, inStruct[fuse.CopyFileRangeIn](r))
		o, n := outStruct[fuse.WriteOut](r)
		o.Size = written
		return st, n
	}},
	opTmpfile: {"TMPFILE", argSize[fuse.CreateIn](), func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		o, n := outStruct[fuse.CreateOut](r)
		return fs.Tmpfile(r.cancel, inStruct[fuse.CreateIn](r), o), n
	}},
}

// withName adapts a handler of a request whose payload is one name.
func withName(f func(fuse.RawFileSystem, *request, string) (fuse.Status, int)) func(fuse.RawFileSystem, *request) (fuse.Status, int) {
	return func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		ns, ok := r.names(1)
		if !ok {
			return fuse.EINVAL, 0
		}
		return f(fs, r, ns[0])
	}
}

// withNames adapts a handler of a request whose payload is two names.
func withNames(f func(fuse.RawFileSystem, *request, string, string) (fuse.Status, int)) func(fuse.RawFileSystem, *request) (fuse.Status, int) {
	return func(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
		ns, ok := r.names(2)
		if !ok {
			return fuse.EINVAL, 0
		}
		return f(fs, r, ns[0], ns[1])
	}
}

func serveRename(fs fuse.RawFileSystem, r *request, oldName, newName string) (fuse.Status, int) {
	return fs.Rename(r.cancel, inStruct[fuse.RenameIn](r), oldName, newName), 0
}

func doWrite(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
	in := inStruct[fuse.WriteIn](r)
	if int(in.Size) > len(r.payload) {
		return fuse.EINVAL, 0
	}
	data := r.payload[:in.Size]
	written, st := fs.Writev(r.cancel, in, [][]byte{data})
	if st == fuse.ENOSYS {
		written, st = fs.Write(r.cancel, in, data)
	}
	o, n := outStruct[fuse.WriteOut](r)
	o.Size = written
	return st, n
}

func doSetXAttr(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
	in := inStruct[fuse.SetXAttrIn](r)
	i := bytes.IndexByte(r.payload, 0)
	if i < 0 || len(r.payload)-i-1 < int(in.Size) {
		return fuse.EINVAL, 0
	}
	return fs.SetXAttr(r.cancel, in, string(r.payload[:i]), r.payload[i+1:i+1+int(in.Size)]), 0
}

func doReadDir(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
	in := inStruct[fuse.ReadIn](r)
	size := min(int(in.Size), len(r.out))
	l := fuse.NewDirEntryList(r.out[:size], in.Offset)
	var st fuse.Status
	if r.header().Opcode == opReaddir {
		st = fs.ReadDir(r.cancel, in, l)
	} else {
		st = fs.ReadDirPlus(r.cancel, in, l)
	}
	if !st.Ok() {
		return st, 0
	}
	return st, len(l.Bytes())
}

func doRead(fs fuse.RawFileSystem, r *request) (fuse.Status, int) {
	in := inStruct[fuse.ReadIn](r)
	buf := r.out[:min(int(in.Size), len(r.out))]
	rr, st := fs.Read(r.cancel, in, buf)
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
		sz, st = fs.GetXAttr(r.cancel, h, name, dest)
	} else {
		sz, st = fs.ListXAttr(r.cancel, h, dest)
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
