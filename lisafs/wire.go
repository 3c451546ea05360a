// Wire encoding: all integers are little-endian and every structure is
// packed (README.md, "Transport").

package lisafs

import (
	"encoding/binary"
	"fmt"
	"math"
)

// FDID names a server-side object (control FD, open FD or bound socket) on
// one connection. The zero value is invalid.
type FDID uint64

// InvalidFDID is the FDID value that never names an object.
const InvalidFDID FDID = 0

// MID is a LISAFS message identifier.
type MID uint16

// Message identifiers. A successful response carries the request's MID; a
// failed request is answered with MIDError.
const (
	MIDError            MID = 0
	MIDMount            MID = 1
	MIDChannel          MID = 2
	MIDFStat            MID = 3
	MIDSetStat          MID = 4
	MIDWalk             MID = 5
	MIDWalkStat         MID = 6
	MIDOpenAt           MID = 7
	MIDOpenCreateAt     MID = 8
	MIDClose            MID = 9
	MIDFSync            MID = 10
	MIDPWrite           MID = 11
	MIDPRead            MID = 12
	MIDMkdirAt          MID = 13
	MIDMknodAt          MID = 14
	MIDSymlinkAt        MID = 15
	MIDLinkAt           MID = 16
	MIDFStatFS          MID = 17
	MIDFAllocate        MID = 18
	MIDReadLinkAt       MID = 19
	MIDFlush            MID = 20
	MIDConnect          MID = 21
	MIDUnlinkAt         MID = 22
	MIDRenameAt         MID = 23
	MIDGetdents64       MID = 24
	MIDFGetXattr        MID = 25
	MIDFSetXattr        MID = 26
	MIDFListXattr       MID = 27
	MIDFRemoveXattr     MID = 28
	MIDBindAt           MID = 29
	MIDListen           MID = 30
	MIDAccept           MID = 31
	MIDConnectWithCreds MID = 32
	MIDRenameAt2        MID = 33

	// MIDMax is the highest standard MID defined by the protocol.
	MIDMax = MIDRenameAt2
)

// String returns the protocol name of m ("Walk"), or "MID(n)" if unknown.
func (m MID) String() string {
	if r := row(catalogue(), m); r.name != "" {
		return r.name
	}
	return fmt.Sprintf("MID(%d)", uint16(m))
}

// NoUID and NoGID mean "no owner given / leave unchanged" in UID/GID fields.
const (
	NoUID uint32 = 0xFFFFFFFF
	NoGID uint32 = 0xFFFFFFFF
)

// MaxMessageSize is the largest payload (header excluded) this package's
// server advertises: 2 MiB minus one 4 KiB page (2,093,056 bytes).
const MaxMessageSize = 2<<20 - 4096

// DefaultClientMaxMessageSize is the payload limit a client assumes before
// the Mount response tells it the server's value (1 MiB, as gVisor).
const DefaultClientMaxMessageSize = 1 << 20

// HeaderSize is the size of the socket framing header
// {u32 payloadLen, u16 MID, u16 pad}.
const HeaderSize = 8

// MaxStringLen is the longest SizedString the wire can carry (u16 length).
const MaxStringLen = math.MaxUint16

// MaxArrayLen is the largest element count of any wire array (u16 count).
const MaxArrayLen = math.MaxUint16

// Fixed wire sizes in bytes.
const (
	StatxSize          = 144
	InodeSize          = 152
	StatFSSize         = 64
	TimespecSize       = 16
	StatxTimestampSize = 16
	// DirentHeaderSize is the size of a Dirent64 record without its name bytes
	// (27 = 25 fixed bytes + the u16 name length).
	DirentHeaderSize = 27
	// PWriteReqHeaderSize is the size of a PWriteReq before its data.
	PWriteReqHeaderSize = 20
	// PReadRespHeaderSize is the size of a PReadResp before its data.
	PReadRespHeaderSize = 8
	// WalkRespHeaderSize is the size of a WalkResp before its inodes.
	WalkRespHeaderSize = 3
	// WalkStatRespHeaderSize is the size of a WalkStatResp before its stats.
	WalkStatRespHeaderSize = 2
)

// WalkStatus is the status byte of a WalkResp.
type WalkStatus uint8

// Walk statuses.
const (
	// WalkSuccess: every component was walked.
	WalkSuccess WalkStatus = 0
	// WalkComponentDoesNotExist: a component was missing; the inodes walked
	// before it are returned.
	WalkComponentDoesNotExist WalkStatus = 1
	// WalkComponentSymlink: a symlink was met with components left after it;
	// it is the last inode returned.
	WalkComponentSymlink WalkStatus = 2
)

// Timespec is the wire form of a timestamp in SetStatReq: i64 sec, i64 nsec
// (16 bytes).
type Timespec struct {
	Sec  int64
	Nsec int64
}

// StatxTimestamp is a statx timestamp: i64 sec, u32 nsec, 4 pad bytes (16).
type StatxTimestamp struct {
	Sec  int64
	Nsec uint32
}

// Statx is the first 144 bytes of the Linux struct statx.
type Statx struct {
	Mask           uint32
	Blksize        uint32
	Attributes     uint64
	Nlink          uint32
	UID            uint32
	GID            uint32
	Mode           uint16
	Ino            uint64
	Size           uint64
	Blocks         uint64
	AttributesMask uint64
	Atime          StatxTimestamp
	Btime          StatxTimestamp
	Ctime          StatxTimestamp
	Mtime          StatxTimestamp
	RdevMajor      uint32
	RdevMinor      uint32
	DevMajor       uint32
	DevMinor       uint32
}

// Inode is a new control FDID together with the file's Statx (152 bytes).
type Inode struct {
	ControlFD FDID
	Stat      Statx
}

// StatFS is the FStatFS response (64 bytes).
type StatFS struct {
	Type            uint64
	BlockSize       int64
	Blocks          uint64
	BlocksFree      uint64
	BlocksAvailable uint64
	Files           uint64
	FilesFree       uint64
	NameLength      uint64
}

// Dirent64 is one directory entry of a Getdents64 response; its wire size
// is DirentHeaderSize + len(Name).
type Dirent64 struct {
	Ino      uint64
	DevMinor uint32
	DevMajor uint32
	Off      uint64
	Type     uint8
	Name     string
}

// ---------------------------------------------------------------------------
// Encoding primitives. Append functions never fail; over-long strings and
// arrays are clamped to the u16 maximum so that the frame stays
// self-consistent (callers that care check SizedStringFits first).

func appendU8(dst []byte, v uint8) []byte   { return append(dst, v) }
func appendU16(dst []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(dst, v) }
func appendU32(dst []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(dst, v) }
func appendU64(dst []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(dst, v) }

// text is a name or data field: encoders accept both string and []byte so
// that clients can encode Go strings without converting them.
type text interface{ ~string | ~[]byte }

// appendSized appends a SizedString (u16 length + bytes), clamping to
// MaxStringLen bytes.
func appendSized[T text](dst []byte, s T) []byte {
	if len(s) > MaxStringLen {
		s = s[:MaxStringLen]
	}
	dst = appendU16(dst, uint16(len(s)))
	return append(dst, s...)
}

// SizedStringFits reports whether a string of n bytes fits in a SizedString.
func SizedStringFits(n int) bool { return n >= 0 && n <= MaxStringLen }

// clampCount returns n limited to MaxArrayLen.
func clampCount(n int) int {
	if n > MaxArrayLen {
		return MaxArrayLen
	}
	return n
}

func appendTimespec(dst []byte, t Timespec) []byte {
	dst = appendU64(dst, uint64(t.Sec))
	return appendU64(dst, uint64(t.Nsec))
}

func appendStatxTimestamp(dst []byte, t StatxTimestamp) []byte {
	dst = appendU64(dst, uint64(t.Sec))
	dst = appendU32(dst, t.Nsec)
	return appendU32(dst, 0)
}

// Append appends the 144-byte wire form of s to dst.
func (s *Statx) Append(dst []byte) []byte {
	dst = appendU32(dst, s.Mask)
	dst = appendU32(dst, s.Blksize)
	dst = appendU64(dst, s.Attributes)
	dst = appendU32(dst, s.Nlink)
	dst = appendU32(dst, s.UID)
	dst = appendU32(dst, s.GID)
	dst = appendU16(dst, s.Mode)
	dst = appendU16(dst, 0)
	dst = appendU64(dst, s.Ino)
	dst = appendU64(dst, s.Size)
	dst = appendU64(dst, s.Blocks)
	dst = appendU64(dst, s.AttributesMask)
	dst = appendStatxTimestamp(dst, s.Atime)
	dst = appendStatxTimestamp(dst, s.Btime)
	dst = appendStatxTimestamp(dst, s.Ctime)
	dst = appendStatxTimestamp(dst, s.Mtime)
	dst = appendU32(dst, s.RdevMajor)
	dst = appendU32(dst, s.RdevMinor)
	dst = appendU32(dst, s.DevMajor)
	return appendU32(dst, s.DevMinor)
}

// Decode decodes exactly StatxSize bytes (the FStat response).
func (s *Statx) Decode(src []byte) error {
	d := decoder{buf: src}
	d.statx(s)
	return d.finish("Statx")
}

// Append appends the 152-byte wire form of i to dst.
func (i *Inode) Append(dst []byte) []byte {
	dst = appendU64(dst, uint64(i.ControlFD))
	return i.Stat.Append(dst)
}

// Decode decodes exactly InodeSize bytes (MkdirAt/MknodAt/SymlinkAt/LinkAt
// responses).
func (i *Inode) Decode(src []byte) error {
	d := decoder{buf: src}
	d.inode(i)
	return d.finish("Inode")
}

// Append appends the 64-byte wire form of s to dst.
func (s *StatFS) Append(dst []byte) []byte {
	dst = appendU64(dst, s.Type)
	dst = appendU64(dst, uint64(s.BlockSize))
	dst = appendU64(dst, s.Blocks)
	dst = appendU64(dst, s.BlocksFree)
	dst = appendU64(dst, s.BlocksAvailable)
	dst = appendU64(dst, s.Files)
	dst = appendU64(dst, s.FilesFree)
	return appendU64(dst, s.NameLength)
}

// Decode decodes exactly StatFSSize bytes (the FStatFS response).
func (s *StatFS) Decode(src []byte) error {
	d := decoder{buf: src}
	s.Type = d.u64()
	s.BlockSize = int64(d.u64())
	s.Blocks = d.u64()
	s.BlocksFree = d.u64()
	s.BlocksAvailable = d.u64()
	s.Files = d.u64()
	s.FilesFree = d.u64()
	s.NameLength = d.u64()
	return d.finish("StatFS")
}

// Append appends the wire record of e (DirentHeaderSize + len(Name) bytes).
func (e *Dirent64) Append(dst []byte) []byte {
	dst = appendU64(dst, e.Ino)
	dst = appendU32(dst, e.DevMinor)
	dst = appendU32(dst, e.DevMajor)
	dst = appendU64(dst, e.Off)
	dst = appendU8(dst, e.Type)
	return appendSized(dst, e.Name)
}

// ---------------------------------------------------------------------------
// Decoding primitives. A decoder never reads out of range: the first short
// read marks it failed and every later read returns zero values.

type decoder struct {
	buf    []byte
	off    int
	failed bool
}

func (d *decoder) take(n int) []byte {
	if d.failed || n < 0 || n > len(d.buf)-d.off {
		d.failed = true
		return nil
	}
	b := d.buf[d.off : d.off+n : d.off+n]
	d.off += n
	return b
}

func (d *decoder) u8() uint8 {
	b := d.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (d *decoder) u16() uint16 {
	b := d.take(2)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

func (d *decoder) u32() uint32 {
	b := d.take(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (d *decoder) u64() uint64 {
	b := d.take(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

func (d *decoder) fdid() FDID { return FDID(d.u64()) }

// sized returns the bytes of a SizedString, aliasing the source buffer.
func (d *decoder) sized() []byte {
	n := int(d.u16())
	return d.take(n)
}

// remaining returns how many undecoded bytes are left.
func (d *decoder) remaining() int {
	if d.failed {
		return 0
	}
	return len(d.buf) - d.off
}

// count reads a u16 element count and checks that count elements of at least
// minSize bytes each can still fit in the remaining input.
func (d *decoder) count(minSize int) int {
	n := int(d.u16())
	if d.failed {
		return 0
	}
	if minSize > 0 && n > d.remaining()/minSize {
		d.failed = true
		return 0
	}
	return n
}

func (d *decoder) timespec() Timespec {
	return Timespec{Sec: int64(d.u64()), Nsec: int64(d.u64())}
}

func (d *decoder) statxTimestamp() StatxTimestamp {
	t := StatxTimestamp{Sec: int64(d.u64()), Nsec: d.u32()}
	d.u32() // pad
	return t
}

func (d *decoder) statx(s *Statx) {
	if d.remaining() < StatxSize {
		d.failed = true
		*s = Statx{}
		return
	}
	s.Mask = d.u32()
	s.Blksize = d.u32()
	s.Attributes = d.u64()
	s.Nlink = d.u32()
	s.UID = d.u32()
	s.GID = d.u32()
	s.Mode = d.u16()
	d.u16() // pad
	s.Ino = d.u64()
	s.Size = d.u64()
	s.Blocks = d.u64()
	s.AttributesMask = d.u64()
	s.Atime = d.statxTimestamp()
	s.Btime = d.statxTimestamp()
	s.Ctime = d.statxTimestamp()
	s.Mtime = d.statxTimestamp()
	s.RdevMajor = d.u32()
	s.RdevMinor = d.u32()
	s.DevMajor = d.u32()
	s.DevMinor = d.u32()
}

func (d *decoder) inode(i *Inode) {
	i.ControlFD = d.fdid()
	d.statx(&i.Stat)
}

// finish reports a decoding failure (short input, inconsistent length or
// trailing bytes) as an error wrapping unix.EIO.
func (d *decoder) finish(what string) error {
	if d.failed {
		return decodeError(what, "payload too short or inconsistent", len(d.buf))
	}
	if d.off != len(d.buf) {
		return decodeError(what, "trailing bytes", len(d.buf))
	}
	return nil
}
