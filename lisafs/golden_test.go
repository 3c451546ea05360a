package lisafs

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Golden vectors: expected bytes are built from the spec's offset tables
// (the protocol's published layouts), not from the encoder.

func goldenHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex: %v", err)
	}
	return b
}

// goldenPut writes v little-endian with the given size at off.
func goldenPut(b []byte, off, size int, v uint64) {
	switch size {
	case 1:
		b[off] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(b[off:], uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(b[off:], uint32(v))
	case 8:
		binary.LittleEndian.PutUint64(b[off:], v)
	}
}

// goldenStatx lays out wireSampleStatx(seed) by the Statx offset table.
func goldenStatx(seed uint64) []byte {
	s := wireSampleStatx(seed)
	b := make([]byte, 144)
	for _, f := range []struct {
		off, size int
		v         uint64
	}{
		{0, 4, uint64(s.Mask)}, {4, 4, uint64(s.Blksize)}, {8, 8, s.Attributes}, {16, 4, uint64(s.Nlink)},
		{20, 4, uint64(s.UID)}, {24, 4, uint64(s.GID)}, {28, 2, uint64(s.Mode)}, {32, 8, s.Ino},
		{40, 8, s.Size}, {48, 8, s.Blocks}, {56, 8, s.AttributesMask},
		{64, 8, uint64(s.Atime.Sec)}, {72, 4, uint64(s.Atime.Nsec)},
		{80, 8, uint64(s.Btime.Sec)}, {88, 4, uint64(s.Btime.Nsec)},
		{96, 8, uint64(s.Ctime.Sec)}, {104, 4, uint64(s.Ctime.Nsec)},
		{112, 8, uint64(s.Mtime.Sec)}, {120, 4, uint64(s.Mtime.Nsec)},
		{128, 4, uint64(s.RdevMajor)}, {132, 4, uint64(s.RdevMinor)},
		{136, 4, uint64(s.DevMajor)}, {140, 4, uint64(s.DevMinor)},
	} {
		goldenPut(b, f.off, f.size, f.v)
	}
	return b
}

func goldenInode(fd FDID) []byte {
	b := make([]byte, 8, InodeSize)
	goldenPut(b, 0, 8, uint64(fd))
	return append(b, goldenStatx(uint64(fd))...)
}

func TestGoldenStatx(t *testing.T) {
	s := wireSampleStatx(1)
	got := s.Append(nil)
	if want := goldenStatx(1); !bytes.Equal(got, want) {
		t.Fatalf("Statx encoding\n got %x\nwant %x", got, want)
	}
	// The wire Statx is byte-for-byte the first 144 bytes of the kernel's
	// struct statx (little-endian host).
	var k unix.Statx_t
	k.Mask, k.Blksize, k.Attributes, k.Nlink, k.Uid, k.Gid, k.Mode = s.Mask, s.Blksize, s.Attributes, s.Nlink, s.UID, s.GID, s.Mode
	k.Ino, k.Size, k.Blocks, k.Attributes_mask = s.Ino, s.Size, s.Blocks, s.AttributesMask
	k.Atime = unix.StatxTimestamp{Sec: s.Atime.Sec, Nsec: s.Atime.Nsec}
	k.Btime = unix.StatxTimestamp{Sec: s.Btime.Sec, Nsec: s.Btime.Nsec}
	k.Ctime = unix.StatxTimestamp{Sec: s.Ctime.Sec, Nsec: s.Ctime.Nsec}
	k.Mtime = unix.StatxTimestamp{Sec: s.Mtime.Sec, Nsec: s.Mtime.Nsec}
	k.Rdev_major, k.Rdev_minor, k.Dev_major, k.Dev_minor = s.RdevMajor, s.RdevMinor, s.DevMajor, s.DevMinor
	kernel := unsafe.Slice((*byte)(unsafe.Pointer(&k)), StatxSize)
	if !bytes.Equal(got, kernel) {
		t.Fatalf("Statx differs from kernel struct statx prefix\n got %x\nwant %x", got, kernel)
	}
}

func TestGoldenMountResp(t *testing.T) {
	m := MountResp{Root: wireSampleInode(1), MaxMessageSize: MaxMessageSize, SupportedMs: []MID{1, 3, 33}}
	want := make([]byte, 158+2*3)
	copy(want, goldenInode(1))
	goldenPut(want, 152, 4, 2093056)
	goldenPut(want, 156, 2, 3)
	goldenPut(want, 158, 2, 1)
	goldenPut(want, 160, 2, 3)
	goldenPut(want, 162, 2, 33)
	if got := m.Append(nil); !bytes.Equal(got, want) {
		t.Fatalf("MountResp\n got %x\nwant %x", got, want)
	}
	// gVisor fsgofer's answer: 32 MIDs → 222 bytes.
	all := MountResp{SupportedMs: make([]MID, 32)}
	if n := len(all.Append(nil)); n != 222 {
		t.Fatalf("MountResp with 32 MIDs is %d bytes, want 222", n)
	}
}

func TestGoldenWalkResp(t *testing.T) {
	m := WalkResp{Status: WalkComponentDoesNotExist, Inodes: []Inode{wireSampleInode(5), wireSampleInode(6)}}
	want := []byte{1, 2, 0} // status @0, u16 N @1 (unaligned)
	want = append(want, goldenInode(5)...)
	want = append(want, goldenInode(6)...)
	got := m.Append(nil)
	if !bytes.Equal(got, want) || len(got) != 3+152*2 {
		t.Fatalf("WalkResp (%d bytes)\n got %x\nwant %x", len(got), got, want)
	}
}

func TestGoldenGetdents64Resp(t *testing.T) {
	m := Getdents64Resp{Dirents: []Dirent64{
		{Ino: 0x10, DevMinor: 1, DevMajor: 8, Off: 0x20, Type: 8, Name: "a"},
		{Ino: 0x11, DevMinor: 2, DevMajor: 9, Off: 0x7fffffffffffffff, Type: 4, Name: "dir"},
	}}
	want := goldenHex(t, `
		02 00
		10 00 00 00 00 00 00 00  01 00 00 00  08 00 00 00  20 00 00 00 00 00 00 00  08  01 00  61
		11 00 00 00 00 00 00 00  02 00 00 00  09 00 00 00  ff ff ff ff ff ff ff 7f  04  03 00  64 69 72`)
	got := m.Append(nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("Getdents64Resp\n got %x\nwant %x", got, want)
	}
	var d Getdents64Resp
	if err := d.Decode(want); err != nil || len(d.Dirents) != 2 || d.Dirents[1].Name != "dir" || d.Dirents[0].Type != 8 {
		t.Fatalf("Decode golden Getdents64Resp: %v %+v", err, d)
	}
}

// TestGoldenWalkOpenDir pins the WalkOpenDir extension's request and
// response layouts (extensions.go).
func TestGoldenWalkOpenDir(t *testing.T) {
	req := WalkOpenDirReq{DirFD: 2, Count: -4096, Name: []byte("sub")}
	want := goldenHex(t, `02 00 00 00 00 00 00 00  00 f0 ff ff  03 00 73 75 62`)
	if got := req.Append(nil); !bytes.Equal(got, want) {
		t.Fatalf("WalkOpenDirReq\n got %x\nwant %x", got, want)
	}
	var dreq WalkOpenDirReq
	if err := dreq.Decode(want); err != nil || dreq.DirFD != 2 || dreq.Count != -4096 || string(dreq.Name) != "sub" {
		t.Fatalf("Decode golden WalkOpenDirReq: %v %+v", err, dreq)
	}

	st := wireSampleStatx(5)
	resp := WalkOpenDirResp{Child: wireSampleInode(7), OpenFD: 8, Flags: 0, Dirents: []DirentStat{
		{Dirent64: Dirent64{Ino: 0x10, DevMinor: 1, DevMajor: 8, Off: 0x20, Type: 8, Name: "a"}, Stat: st},
	}}
	want = goldenInode(7)                                                               // Child @0
	want = append(want, goldenHex(t, `08 00 00 00 00 00 00 00  00 00 00 00  01 00`)...) // OpenFD @152, Flags @160, N @164
	want = append(want, goldenHex(t, `10 00 00 00 00 00 00 00  01 00 00 00  08 00 00 00  20 00 00 00 00 00 00 00  08  01 00  61`)...)
	want = append(want, goldenStatx(5)...)
	got := resp.Append(nil)
	if !bytes.Equal(got, want) || len(got) != 152+8+4+2+28+144 {
		t.Fatalf("WalkOpenDirResp (%d bytes)\n got %x\nwant %x", len(got), got, want)
	}
	var dresp WalkOpenDirResp
	if err := dresp.Decode(want); err != nil || dresp.Child.ControlFD != 7 || dresp.OpenFD != 8 || dresp.End() ||
		len(dresp.Dirents) != 1 || dresp.Dirents[0].Name != "a" || dresp.Dirents[0].Stat != st {
		t.Fatalf("Decode golden WalkOpenDirResp: %v %+v", err, dresp)
	}
	// The end of the directory: flag bit 0, no open FDID, no entries.
	end := WalkOpenDirResp{Child: wireSampleInode(7), Flags: WalkOpenDirEnd}
	want = append(goldenInode(7), goldenHex(t, `00 00 00 00 00 00 00 00  01 00 00 00  00 00`)...)
	if got := end.Append(nil); !bytes.Equal(got, want) {
		t.Fatalf("WalkOpenDirResp at end\n got %x\nwant %x", got, want)
	}
}

func TestGoldenFixedRequests(t *testing.T) {
	cases := []struct {
		name string
		msg  Message
		hex  string
	}{
		{"SetStatReq", &SetStatReq{FD: 3, Mask: 0x202, Mode: 0o644, UID: 1, GID: 2, Size: 5, Atime: Timespec{6, 7}, Mtime: Timespec{8, 9}}, `
			03 00 00 00 00 00 00 00  02 02 00 00  a4 01 00 00  01 00 00 00  02 00 00 00
			05 00 00 00 00 00 00 00  06 00 00 00 00 00 00 00  07 00 00 00 00 00 00 00
			08 00 00 00 00 00 00 00  09 00 00 00 00 00 00 00`},
		{"OpenAtReq", &OpenAtReq{FD: 2, Flags: 0x202}, `02 00 00 00 00 00 00 00  02 02 00 00  00 00 00 00`},
		{"OpenCreateAtReq", &OpenCreateAtReq{DirFD: 1, UID: 0xffffffff, GID: 5, Mode: 0o600, Flags: 1, Name: []byte("f")}, `
			01 00 00 00 00 00 00 00  ff ff ff ff  05 00 00 00  80 01  00 00 00 00 00 00
			01 00 00 00  01 00 66`},
		{"MknodAtReq", &MknodAtReq{DirFD: 1, Mode: 0x2000, Minor: 3, Major: 4, Name: []byte("c")}, `
			01 00 00 00 00 00 00 00  00 00 00 00  00 00 00 00  00 20  00 00 00 00 00 00
			03 00 00 00  04 00 00 00  01 00 63`},
		{"PWriteReq", &PWriteReq{Offset: 1, FD: 2, Buf: []byte("hi")}, `
			01 00 00 00 00 00 00 00  02 00 00 00 00 00 00 00  02 00 00 00  68 69`},
		{"RenameAt2Req", &RenameAt2Req{RenameAtReq: RenameAtReq{OldDir: 1, NewDir: 2, OldName: []byte("a"), NewName: []byte("b")}, Flags: 4}, `
			01 00 00 00 00 00 00 00  02 00 00 00 00 00 00 00  01 00 61  01 00 62  04 00 00 00`},
		{"Getdents64Req rewind", &Getdents64Req{DirFD: 4, Count: -1}, `04 00 00 00 00 00 00 00  ff ff ff ff  00 00 00 00`},
		{"FdArray", &FdArray{FDs: []FDID{1, 2}}, `02 00  01 00 00 00 00 00 00 00  02 00 00 00 00 00 00 00`},
		{"FGetXattrReq", &FGetXattrReq{FD: 1, BufSize: 0, Name: []byte("u")}, `01 00 00 00 00 00 00 00  00 00 00 00  01 00 75`},
		{"ListenReq", &ListenReq{FD: 7, Backlog: 16}, `07 00 00 00 00 00 00 00  10 00 00 00  00 00 00 00`},
		{"ConnectWithCredsReq", &ConnectWithCredsReq{FD: 1, SockType: 1, UID: 2, GID: 3}, `
			01 00 00 00 00 00 00 00  01 00 00 00  00 00 00 00  02 00 00 00  03 00 00 00`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := goldenHex(t, c.hex)
			if got := c.msg.Append(nil); !bytes.Equal(got, want) {
				t.Fatalf("\n got %x\nwant %x", got, want)
			}
		})
	}
}

// goldenPair returns a connected stream socketpair closed at cleanup.
func goldenPair(t *testing.T) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// goldenReadN reads exactly n raw bytes from fd.
func goldenReadN(t *testing.T, fd, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	for off := 0; off < n; {
		k, err := unix.Read(fd, b[off:])
		if err != nil || k == 0 {
			t.Fatalf("read: %d %v", k, err)
		}
		off += k
	}
	return b
}

// TestWorkedExampleFramesMatchBytes: the protocol's worked examples, framed
// by Conn.Send on a real socket, are the given bytes, and Conn.Recv parses
// them back.
func TestWorkedExampleFramesMatchBytes(t *testing.T) {
	cases := []struct {
		name string
		mid  MID
		msg  Message
		hex  string
	}{
		{"Mount request", MIDMount, &EmptyMessage{}, `00 00 00 00  01 00  00 00`},
		{"Walk request", MIDWalk, &WalkReq{DirFD: 1, Path: [][]byte{[]byte("sub"), []byte("nested.txt")}}, `
			1b 00 00 00  05 00  00 00
			01 00 00 00 00 00 00 00
			02 00
			03 00 73 75 62
			0a 00 6e 65 73 74 65 64 2e 74 78 74`},
		{"Error EBADF", MIDError, &ErrorResp{Errno: uint32(unix.EBADF)}, `04 00 00 00  00 00  00 00   09 00 00 00`},
		{"PRead request", MIDPRead, &PReadReq{Offset: 2, FD: 4, Count: 100}, `
			18 00 00 00  0c 00  00 00
			02 00 00 00 00 00 00 00   04 00 00 00 00 00 00 00   64 00 00 00   00 00 00 00`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := goldenPair(t)
			want := goldenHex(t, c.hex)
			sender := &Conn{fd: a} // not closed by Conn: the pair is closed at cleanup
			if err := sender.Send(c.mid, c.msg.Append(nil), nil); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if got := goldenReadN(t, b, len(want)); !bytes.Equal(got, want) {
				t.Fatalf("frame\n got %x\nwant %x", got, want)
			}
			// And the reverse: raw bytes in, message out.
			if _, err := unix.Write(a, want); err != nil {
				t.Fatalf("write: %v", err)
			}
			receiver := &Conn{fd: b}
			mid, payload, fds, err := receiver.Recv(MaxMessageSize, 0)
			if err != nil || mid != c.mid || len(fds) != 0 {
				t.Fatalf("Recv = %v, %v fds, %v; want %v", mid, fds, err, c.mid)
			}
			dec := newResponse(c.mid)
			if c.mid != MIDError {
				dec = newRequest(c.mid)
			}
			if err := dec.Decode(payload); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got := dec.Append(nil); !bytes.Equal(got, want[HeaderSize:]) {
				t.Fatalf("decoded payload re-encodes to %x", got)
			}
		})
	}
}
