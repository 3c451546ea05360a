package lisafs

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

// wireSampleStatx returns a Statx with every field distinct and non-zero.
func wireSampleStatx(seed uint64) Statx {
	return Statx{
		Mask: 0x1fff, Blksize: 4096, Attributes: 0x10 + seed, Nlink: 2, UID: 1000, GID: 1001,
		Mode: 0o100644, Ino: 0xABCDEF + seed, Size: 12345, Blocks: 24, AttributesMask: 0x70,
		Atime: StatxTimestamp{Sec: 1700000000, Nsec: 1}, Btime: StatxTimestamp{Sec: -5, Nsec: 2},
		Ctime: StatxTimestamp{Sec: 1700000002, Nsec: 999999999}, Mtime: StatxTimestamp{Sec: 1700000003, Nsec: 4},
		RdevMajor: 8, RdevMinor: 1, DevMajor: 259, DevMinor: 3,
	}
}

func wireSampleInode(fd FDID) Inode { return Inode{ControlFD: fd, Stat: wireSampleStatx(uint64(fd))} }

// wireCase is one message sample; every field holds a non-zero value and
// every slice is non-empty so that a lost field shows up in DeepEqual.
type wireCase struct {
	name string
	mid  MID
	req  bool // request (true) or response (false) payload of mid
	msg  Message
}

func wireCases() []wireCase {
	b := func(s string) []byte { return []byte(s) }
	return []wireCase{
		{"ErrorResp", MIDError, false, &ErrorResp{Errno: uint32(unix.EBADF)}},
		{"MountResp", MIDMount, false, &MountResp{Root: wireSampleInode(1), MaxMessageSize: MaxMessageSize, SupportedMs: []MID{1, 3, 5, 33, 300}}},
		{"ChannelResp", MIDChannel, false, &ChannelResp{DataOffset: 4096, DataLength: 2 << 20}},
		{"FDReq FStat", MIDFStat, true, &FDReq{FD: 7}},
		{"Statx", MIDFStat, false, func() *Statx { s := wireSampleStatx(1); return &s }()},
		{"SetStatReq", MIDSetStat, true, &SetStatReq{FD: 3, Mask: 0x27a, Mode: 0o755, UID: 1, GID: 2, Size: 1 << 40,
			Atime: Timespec{Sec: 10, Nsec: (1 << 30) - 1}, Mtime: Timespec{Sec: -11, Nsec: (1 << 30) - 2}}},
		{"SetStatResp", MIDSetStat, false, &SetStatResp{FailureMask: 0x8, FailureErrNo: uint32(unix.EPERM)}},
		{"WalkReq", MIDWalk, true, &WalkReq{DirFD: 1, Path: [][]byte{b("sub"), b("nested.txt"), b("\xff\x00x")}}},
		{"WalkReq(WalkStat)", MIDWalkStat, true, &WalkReq{DirFD: 2, Path: [][]byte{b(""), b("a")}}},
		{"WalkResp", MIDWalk, false, &WalkResp{Status: WalkComponentSymlink, Inodes: []Inode{wireSampleInode(5), wireSampleInode(6)}}},
		{"WalkStatResp", MIDWalkStat, false, &WalkStatResp{Stats: []Statx{wireSampleStatx(1), wireSampleStatx(2), wireSampleStatx(3)}}},
		{"OpenAtReq", MIDOpenAt, true, &OpenAtReq{FD: 9, Flags: unix.O_RDWR | unix.O_TRUNC}},
		{"OpenAtResp", MIDOpenAt, false, &OpenAtResp{OpenFD: 10}},
		{"OpenCreateAtReq", MIDOpenCreateAt, true, &OpenCreateAtReq{DirFD: 1, UID: 5, GID: 6, Mode: 0o640, Flags: unix.O_WRONLY, Name: b("new.txt")}},
		{"OpenCreateAtResp", MIDOpenCreateAt, false, &OpenCreateAtResp{Child: wireSampleInode(11), NewFD: 12}},
		{"FdArray(Close)", MIDClose, true, &FdArray{FDs: []FDID{1, 2, 1 << 63}}},
		{"FdArray(FSync)", MIDFSync, true, &FdArray{FDs: []FDID{4}}},
		{"PWriteReq", MIDPWrite, true, &PWriteReq{Offset: 1 << 33, FD: 4, Buf: b("hello, world")}},
		{"PWriteResp", MIDPWrite, false, &PWriteResp{Count: 12}},
		{"PReadReq", MIDPRead, true, &PReadReq{Offset: 2, FD: 4, Count: 100}},
		{"PReadResp", MIDPRead, false, &PReadResp{Buf: b("some file data")}},
		{"MkdirAtReq", MIDMkdirAt, true, &MkdirAtReq{DirFD: 1, UID: NoUID, GID: NoGID, Mode: 0o700, Name: b("d")}},
		{"MkdirAt resp", MIDMkdirAt, false, func() *Inode { i := wireSampleInode(13); return &i }()},
		{"MknodAtReq", MIDMknodAt, true, &MknodAtReq{DirFD: 1, UID: 0, GID: 3, Mode: unix.S_IFCHR, Minor: 7, Major: 9, Name: b("wh")}},
		{"SymlinkAtReq", MIDSymlinkAt, true, &SymlinkAtReq{DirFD: 1, UID: 2, GID: 3, Name: b("ln"), Target: b("../target/x")}},
		{"LinkAtReq", MIDLinkAt, true, &LinkAtReq{DirFD: 1, Target: 8, Name: b("hard")}},
		{"FDReq FStatFS", MIDFStatFS, true, &FDReq{FD: 1}},
		{"StatFS", MIDFStatFS, false, &StatFS{Type: 0xEF53, BlockSize: 4096, Blocks: 100, BlocksFree: 50, BlocksAvailable: 40, Files: 1000, FilesFree: 900, NameLength: 255}},
		{"FAllocateReq", MIDFAllocate, true, &FAllocateReq{FD: 4, Mode: 1, Offset: 4096, Length: 8192}},
		{"FDReq ReadLinkAt", MIDReadLinkAt, true, &FDReq{FD: 3}},
		{"ReadLinkAtResp", MIDReadLinkAt, false, &ReadLinkAtResp{Target: b("/abs/target")}},
		{"FDReq Flush", MIDFlush, true, &FDReq{FD: 4}},
		{"ConnectReq", MIDConnect, true, &ConnectReq{FD: 3, SockType: unix.SOCK_STREAM}},
		{"UnlinkAtReq", MIDUnlinkAt, true, &UnlinkAtReq{DirFD: 1, Flags: unix.AT_REMOVEDIR, Name: b("gone")}},
		{"RenameAtReq", MIDRenameAt, true, &RenameAtReq{OldDir: 1, NewDir: 2, OldName: b("a"), NewName: b("bb")}},
		{"RenameAt2Req", MIDRenameAt2, true, &RenameAt2Req{RenameAtReq: RenameAtReq{OldDir: 1, NewDir: 2, OldName: b("a"), NewName: b("bb")}, Flags: 1}},
		{"Getdents64Req", MIDGetdents64, true, &Getdents64Req{DirFD: 4, Count: -65536}},
		{"Getdents64Resp", MIDGetdents64, false, &Getdents64Resp{Dirents: []Dirent64{
			{Ino: 1, DevMinor: 2, DevMajor: 3, Off: 4, Type: unix.DT_REG, Name: "file"},
			{Ino: 5, DevMinor: 6, DevMajor: 7, Off: 8, Type: unix.DT_DIR, Name: "dir"}}}},
		{"FGetXattrReq", MIDFGetXattr, true, &FGetXattrReq{FD: 3, BufSize: 64, Name: b("user.k")}},
		{"FGetXattrResp", MIDFGetXattr, false, &FGetXattrResp{Value: b("v\x00al")}},
		{"FSetXattrReq", MIDFSetXattr, true, &FSetXattrReq{FD: 3, Flags: 1, Name: b("user.k"), Value: b("value")}},
		{"FListXattrReq", MIDFListXattr, true, &FListXattrReq{FD: 3, Size: 4096}},
		{"FListXattrResp", MIDFListXattr, false, &FListXattrResp{Xattrs: [][]byte{b("user.a"), b("trusted.overlay.opaque")}}},
		{"FRemoveXattrReq", MIDFRemoveXattr, true, &FRemoveXattrReq{FD: 3, Name: b("user.a")}},
		{"BindAtReq", MIDBindAt, true, &BindAtReq{DirFD: 1, UID: 1, GID: 2, Mode: 0o777, SockType: unix.SOCK_SEQPACKET, Name: b("sock")}},
		{"BindAtResp", MIDBindAt, false, &BindAtResp{Child: wireSampleInode(20), BoundSocketFD: 21}},
		{"ListenReq", MIDListen, true, &ListenReq{FD: 21, Backlog: -1}},
		{"FDReq Accept", MIDAccept, true, &FDReq{FD: 21}},
		{"AcceptResp", MIDAccept, false, &AcceptResp{PeerAddr: b("peer")}},
		{"ConnectWithCredsReq", MIDConnectWithCreds, true, &ConnectWithCredsReq{FD: 3, SockType: 2, UID: 1000, GID: 1000}},
		{"Getdents64Req(Getdents64Stat)", MIDGetdents64Stat, true, &Getdents64Req{DirFD: 4, Count: 65536}},
		{"Getdents64StatResp", MIDGetdents64Stat, false, &Getdents64StatResp{Dirents: []DirentStat{
			{Dirent64: Dirent64{Ino: 1, DevMinor: 2, DevMajor: 3, Off: 4, Type: unix.DT_REG, Name: "file"}, Stat: wireSampleStatx(1)},
			{Dirent64: Dirent64{Ino: 5, DevMinor: 6, DevMajor: 7, Off: 8, Type: unix.DT_DIR, Name: "dir"}, Stat: wireSampleStatx(2)}}}},
		{"WalkOpenDirReq", MIDWalkOpenDir, true, &WalkOpenDirReq{DirFD: 3, Count: 65536, Name: b("sub")}},
		{"WalkOpenDirResp", MIDWalkOpenDir, false, &WalkOpenDirResp{Child: wireSampleInode(22), OpenFD: 23, Flags: WalkOpenDirEnd,
			Dirents: []DirentStat{{Dirent64: Dirent64{Ino: 9, DevMinor: 1, DevMajor: 2, Off: 3, Type: unix.DT_LNK, Name: "ln"}, Stat: wireSampleStatx(3)}}}},
	}
}

// wireDecoderFor returns a fresh decoder for a case's payload kind.
func wireDecoderFor(c wireCase) Message {
	if c.req {
		return newRequest(c.mid)
	}
	return newResponse(c.mid)
}

func TestWireRoundTrip(t *testing.T) {
	for _, c := range wireCases() {
		t.Run(c.name, func(t *testing.T) {
			enc := c.msg.Append(nil)
			got := wireDecoderFor(c)
			if got == nil {
				t.Fatalf("no decoder for mid %v req=%v", c.mid, c.req)
			}
			if reflect.TypeOf(got) != reflect.TypeOf(c.msg) {
				t.Fatalf("decoder type %T, want %T", got, c.msg)
			}
			if err := got.Decode(enc); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, c.msg) {
				t.Fatalf("round trip mismatch:\n got %+v\nwant %+v", got, c.msg)
			}
			if re := got.Append(nil); !bytes.Equal(re, enc) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", re, enc)
			}
			// Append must append, not overwrite.
			prefix := []byte{0xAA, 0xBB}
			if withPrefix := c.msg.Append(prefix); !bytes.Equal(withPrefix[2:], enc) || withPrefix[0] != 0xAA {
				t.Fatalf("Append does not append to dst")
			}
		})
	}
}

// Every standard MID has a request and a response decoder (except the
// response-only Error), and every catalogue message is covered by wireCases.
func TestWireCatalogueComplete(t *testing.T) {
	for m := MIDError; m <= MIDMax; m++ {
		if newResponse(m) == nil {
			t.Errorf("no response decoder for %v", m)
		}
		if (newRequest(m) == nil) != (m == MIDError) {
			t.Errorf("request decoder for %v: %v", m, newRequest(m))
		}
	}
	if newRequest(MIDMax+1) != nil || newResponse(MIDMax+1) != nil {
		t.Errorf("decoder for an unknown MID")
	}
	seen := map[string]bool{}
	for _, c := range wireCases() {
		seen[reflect.TypeOf(c.msg).Elem().Name()] = true
	}
	for _, name := range []string{"MountResp", "FDReq", "SetStatReq", "SetStatResp", "WalkReq",
		"WalkResp", "WalkStatResp", "OpenAtReq", "OpenAtResp", "OpenCreateAtReq", "OpenCreateAtResp",
		"FdArray", "PWriteReq", "PWriteResp", "PReadReq", "PReadResp", "MkdirAtReq", "MknodAtReq",
		"SymlinkAtReq", "LinkAtReq", "FAllocateReq", "ReadLinkAtResp",
		"ConnectReq", "UnlinkAtReq", "RenameAtReq", "RenameAt2Req", "Getdents64Req",
		"Getdents64Resp", "FGetXattrReq", "FGetXattrResp", "FSetXattrReq", "FListXattrReq",
		"FListXattrResp", "FRemoveXattrReq", "BindAtReq", "BindAtResp", "ListenReq",
		"AcceptResp", "ConnectWithCredsReq", "ErrorResp", "ChannelResp", "Statx", "Inode", "StatFS"} {
		if !seen[name] {
			t.Errorf("wireCases lacks %s", name)
		}
	}
}

// Every strict prefix and every one-byte extension of a valid encoding is
// rejected with an error wrapping EIO.
func TestWireDecodeRejectsTruncation(t *testing.T) {
	for _, c := range wireCases() {
		t.Run(c.name, func(t *testing.T) {
			enc := c.msg.Append(nil)
			for n := 0; n < len(enc); n++ {
				err := wireDecoderFor(c).Decode(enc[:n:n])
				if err == nil {
					t.Fatalf("Decode accepted %d of %d bytes", n, len(enc))
				}
				if !errors.Is(err, unix.EIO) {
					t.Fatalf("Decode(%d bytes) error %v does not wrap EIO", n, err)
				}
			}
			long := append(append([]byte{}, enc...), 0)
			if err := wireDecoderFor(c).Decode(long); !errors.Is(err, unix.EIO) {
				t.Fatalf("Decode with a trailing byte: %v, want EIO", err)
			}
		})
	}
}

// Lengths and counts that do not fit the payload are rejected, however large.
func TestWireDecodeRejectsBadLengths(t *testing.T) {
	u16 := func(v uint16) []byte { return appendU16(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	fd := appendU64(nil, 1)
	cases := []struct {
		name string
		msg  Message
		in   []byte
	}{
		{"WalkReq count too big", &WalkReq{}, cat(fd, u16(0xFFFF), u16(1), []byte("a"))},
		{"WalkReq name too long", &WalkReq{}, cat(fd, u16(1), u16(0xFFFF), []byte("abc"))},
		{"WalkResp count", &WalkResp{}, cat([]byte{0}, u16(2), make([]byte, InodeSize))},
		{"WalkStatResp count", &WalkStatResp{}, cat(u16(0xFFFF), make([]byte, StatxSize))},
		{"MountResp MIDs", &MountResp{}, cat(make([]byte, InodeSize+4), u16(3), u16(1), u16(2))},
		{"FdArray count", &FdArray{}, cat(u16(0x8000), fd)},
		{"PWriteReq NumBytes", &PWriteReq{}, cat(fd, fd, appendU32(nil, 0xFFFFFFFF), []byte("xx"))},
		{"PReadResp NumBytes huge", &PReadResp{}, cat(appendU64(nil, 1<<63), []byte("x"))},
		{"PReadResp NumBytes max", &PReadResp{}, appendU64(nil, ^uint64(0))},
		{"Getdents name", &Getdents64Resp{}, cat(u16(1), make([]byte, 25), u16(10), []byte("abc"))},
		{"Getdents count", &Getdents64Resp{}, cat(u16(3), make([]byte, 25), u16(0))},
		{"SymlinkAt target", &SymlinkAtReq{}, cat(fd, make([]byte, 8), u16(1), []byte("a"), u16(9))},
		{"FListXattrResp", &FListXattrResp{}, cat(u16(2), u16(1), []byte("a"))},
		{"ErrorResp short", &ErrorResp{}, []byte{9, 0}},
		{"Empty with data", &EmptyMessage{}, []byte{0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.msg.Decode(c.in); !errors.Is(err, unix.EIO) {
				t.Fatalf("Decode = %v, want an error wrapping EIO", err)
			}
		})
	}
}

// Decoding into a struct whose slices have capacity allocates nothing, and
// names alias the source buffer.
func TestWireDecodeNoAllocs(t *testing.T) {
	walk := (&WalkReq{DirFD: 1, Path: [][]byte{[]byte("a"), []byte("bb"), []byte("ccc")}}).Append(nil)
	pw := (&PWriteReq{FD: 1, Buf: make([]byte, 4096)}).Append(nil)
	oc := (&OpenCreateAtReq{DirFD: 1, Name: []byte("file")}).Append(nil)
	var wr WalkReq
	var pwr PWriteReq
	var ocr OpenCreateAtReq
	if err := wr.Decode(walk); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if wr.Decode(walk) != nil || pwr.Decode(pw) != nil || ocr.Decode(oc) != nil {
			t.Fatal("decode failed")
		}
	})
	if allocs != 0 {
		t.Errorf("decode allocated %v times per run", allocs)
	}
	if &wr.Path[2][0] != &walk[len(walk)-3] {
		t.Errorf("WalkReq names do not alias the payload")
	}
	if &ocr.Name[0] != &oc[len(oc)-4] {
		t.Errorf("OpenCreateAtReq name does not alias the payload")
	}
}

// Encoding into a buffer with room allocates nothing.
func TestWireAppendNoAllocs(t *testing.T) {
	buf := make([]byte, 0, 4096)
	resp := WalkResp{Inodes: []Inode{wireSampleInode(1), wireSampleInode(2)}}
	st := wireSampleStatx(1)
	allocs := testing.AllocsPerRun(100, func() {
		b := resp.Append(buf[:0])
		b = st.Append(b)
		_ = appendWalkReq(b, 1, []string{"a", "b"})
	})
	if allocs != 0 {
		t.Errorf("Append allocated %v times per run", allocs)
	}
}

// Over-long strings are clamped so the encoding stays self-consistent.
func TestWireAppendClampsLongString(t *testing.T) {
	long := bytes.Repeat([]byte("x"), MaxStringLen+10)
	enc := (&FGetXattrResp{Value: long}).Append(nil)
	var r FGetXattrResp
	if err := r.Decode(enc); err != nil {
		t.Fatalf("Decode of clamped string: %v", err)
	}
	if len(r.Value) != MaxStringLen {
		t.Fatalf("clamped length %d, want %d", len(r.Value), MaxStringLen)
	}
	if SizedStringFits(MaxStringLen+1) || !SizedStringFits(MaxStringLen) {
		t.Fatalf("SizedStringFits wrong at the boundary")
	}
}

func TestWireExpectedFDs(t *testing.T) {
	want := map[MID]int{MIDChannel: 2, MIDMount: 1, MIDOpenAt: 1, MIDOpenCreateAt: 1, MIDConnect: 1,
		MIDConnectWithCreds: 1, MIDBindAt: 1, MIDAccept: 1}
	for m := MIDError; m <= MIDMax; m++ {
		if got := expectedFDs(m); got != want[m] {
			t.Errorf("expectedFDs(%v) = %d, want %d", m, got, want[m])
		}
	}
}

func TestWireMIDString(t *testing.T) {
	if MIDWalk.String() != "Walk" || MIDRenameAt2.String() != "RenameAt2" || MID(300).String() != "MID(300)" {
		t.Errorf("MID names: %v %v %v", MIDWalk, MIDRenameAt2, MID(300))
	}
}

// wirePair returns two Conns on a fresh socketpair, closed at cleanup.
func wirePair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	a, b := NewConn(fds[0]), NewConn(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// A payload far larger than the socket buffer goes through (several writes
// on the sender, several reads on the receiver) with its FD attached once.
func TestWireConnLargePayloadWithFD(t *testing.T) {
	for _, nonblock := range []bool{false, true} {
		a, b := wirePair(t)
		if nonblock {
			if unix.SetNonblock(a.FD(), true) != nil || unix.SetNonblock(b.FD(), true) != nil {
				t.Fatal("set nonblock")
			}
		}
		r, w := ctPipe(t)
		payload := bytes.Repeat([]byte("0123456789abcdef"), MaxMessageSize/16)
		errc := make(chan error, 1)
		go func() { errc <- a.Send(MIDPRead, payload, []int{w}) }()
		mid, got, fds, err := b.Recv(MaxMessageSize, 1)
		if err != nil || mid != MIDPRead || !bytes.Equal(got, payload) || len(fds) != 1 {
			t.Fatalf("nonblock=%v: Recv = %v, %d bytes, fds %v, %v", nonblock, mid, len(got), fds, err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("Send: %v", err)
		}
		unix.Close(w)
		unix.Close(fds[0])
		if !ctWriteEndsClosed(t, r) {
			t.Fatalf("an extra copy of the donated fd exists")
		}
	}
}

// FDs beyond wantFDs are closed (or discarded by the kernel), never leaked.
func TestWireConnExtraFDsClosed(t *testing.T) {
	for _, want := range []int{0, 1, 2} {
		a, b := wirePair(t)
		var reads, writes []int
		for i := 0; i < 4; i++ {
			r, w := ctPipe(t)
			reads, writes = append(reads, r), append(writes, w)
		}
		if err := a.Send(MIDOpenAt, []byte{1, 2, 3}, writes); err != nil {
			t.Fatal(err)
		}
		closeFDs(writes)
		_, p, fds, err := b.Recv(MaxMessageSize, want)
		if err != nil || len(p) != 3 || len(fds) != want {
			t.Fatalf("want %d: Recv = %d bytes, fds %v, %v", want, len(p), fds, err)
		}
		for i, r := range reads {
			if closed := ctWriteEndsClosed(t, r); closed != (i >= want) {
				t.Errorf("want %d: pipe %d write end closed=%v", want, i, closed)
			}
		}
		closeFDs(fds)
	}
}

func TestWireConnErrors(t *testing.T) {
	t.Run("too large", func(t *testing.T) {
		a, b := wirePair(t)
		if err := a.Send(MIDWalk, make([]byte, 100), nil); err != nil {
			t.Fatal(err)
		}
		mid, _, _, err := b.Recv(99, 0)
		if mid != MIDWalk || !errors.Is(err, unix.EMSGSIZE) {
			t.Fatalf("Recv = %v, %v; want Walk, EMSGSIZE", mid, err)
		}
	})
	t.Run("clean EOF", func(t *testing.T) {
		a, b := wirePair(t)
		a.Close()
		if _, _, _, err := b.Recv(MaxMessageSize, 0); err != io.EOF {
			t.Fatalf("Recv = %v, want io.EOF", err)
		}
	})
	for _, n := range []int{3, 8 + 5} { // inside the header, inside the payload
		t.Run("EOF inside message", func(t *testing.T) {
			a, b := wirePair(t)
			frame := append([]byte{10, 0, 0, 0, 3, 0, 0, 0}, make([]byte, 10)...)
			if _, err := unix.Write(a.FD(), frame[:n]); err != nil {
				t.Fatal(err)
			}
			a.Close()
			if _, _, _, err := b.Recv(MaxMessageSize, 0); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("Recv = %v, want ErrUnexpectedEOF", err)
			}
		})
	}
	t.Run("after close", func(t *testing.T) {
		a, _ := wirePair(t)
		a.Close()
		if err := a.Send(MIDFStat, nil, nil); err == nil {
			t.Fatal("Send after Close succeeded")
		}
		if _, _, _, err := a.Recv(10, 0); err == nil {
			t.Fatal("Recv after Close succeeded")
		}
		if a.Close() != nil || a.Shutdown() != nil {
			t.Fatal("second Close/Shutdown failed")
		}
	})
	t.Run("shutdown unblocks recv", func(t *testing.T) {
		_, b := wirePair(t)
		errc := make(chan error, 1)
		go func() {
			_, _, _, err := b.Recv(10, 0)
			errc <- err
		}()
		if err := b.Shutdown(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != io.EOF {
			t.Fatalf("Recv after Shutdown = %v, want io.EOF", err)
		}
	})
}

// A steady-state Send/Recv pair allocates nothing (buffers are reused).
func TestWireConnNoAllocs(t *testing.T) {
	a, b := wirePair(t)
	payload := make([]byte, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		if err := a.Send(MIDPRead, payload, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := b.Recv(MaxMessageSize, 1); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Send+Recv allocated %v times", allocs)
	}
}
