package lisafs

// Message structs, one per request/response layout in the catalogue.
//
// Every message has
//
//	Append(dst []byte) []byte  // appends the wire form; no allocation when dst has room
//	Decode(src []byte) error   // strict: short input, a length or count that does
//	                           // not fit, or trailing bytes → *DecodeError (wraps unix.EIO)
//
// Decode never panics and never reads outside src. Unless documented
// otherwise, []byte fields filled by Decode ALIAS src: they are valid only as
// long as src is (for a payload from Conn.Recv: until the next Recv). Slice
// fields holding arrays (WalkReq.Path, FdArray.FDs, ...) are reused across
// Decode calls on the same struct, so a struct kept for decoding allocates
// only when an array grows.

// Message is implemented by every wire message.
type Message interface {
	Append(dst []byte) []byte
	Decode(src []byte) error
}

// EmptyMessage is an empty payload: the Mount and Channel requests and the
// responses of Close, FSync, FAllocate, Flush, Connect, UnlinkAt, RenameAt,
// RenameAt2, FSetXattr, FRemoveXattr, Listen and ConnectWithCreds.
type EmptyMessage struct{}

// Append returns dst unchanged.
func (*EmptyMessage) Append(dst []byte) []byte { return dst }

// Decode accepts only an empty payload.
func (*EmptyMessage) Decode(src []byte) error {
	if len(src) != 0 {
		return decodeError("EmptyMessage", "trailing bytes", len(src))
	}
	return nil
}

// ErrorResp is the payload of a MIDError response (4 bytes).
type ErrorResp struct {
	Errno uint32
}

// Append appends the wire form.
func (m *ErrorResp) Append(dst []byte) []byte { return appendU32(dst, m.Errno) }

// Decode decodes the wire form.
func (m *ErrorResp) Decode(src []byte) error {
	d := decoder{buf: src}
	m.Errno = d.u32()
	return d.finish("ErrorResp")
}

// MountResp is the Mount response: root inode, max payload, supported MIDs
// (158 + 2N bytes).
type MountResp struct {
	Root           Inode
	MaxMessageSize uint32
	SupportedMs    []MID // reused by Decode
}

// Append appends the wire form (at most MaxArrayLen MIDs).
func (m *MountResp) Append(dst []byte) []byte {
	dst = m.Root.Append(dst)
	dst = appendU32(dst, m.MaxMessageSize)
	n := clampCount(len(m.SupportedMs))
	dst = appendU16(dst, uint16(n))
	for _, id := range m.SupportedMs[:n] {
		dst = appendU16(dst, uint16(id))
	}
	return dst
}

// Decode decodes the wire form.
func (m *MountResp) Decode(src []byte) error {
	d := decoder{buf: src}
	d.inode(&m.Root)
	m.MaxMessageSize = d.u32()
	n := d.count(2)
	m.SupportedMs = m.SupportedMs[:0]
	for i := 0; i < n; i++ {
		m.SupportedMs = append(m.SupportedMs, MID(d.u16()))
	}
	return d.finish("MountResp")
}

// ChannelResp is the Channel response (16 bytes).
type ChannelResp struct {
	DataOffset int64
	DataLength uint64
}

// Append appends the wire form.
func (m *ChannelResp) Append(dst []byte) []byte {
	dst = appendU64(dst, uint64(m.DataOffset))
	return appendU64(dst, m.DataLength)
}

// Decode decodes the wire form.
func (m *ChannelResp) Decode(src []byte) error {
	d := decoder{buf: src}
	m.DataOffset = int64(d.u64())
	m.DataLength = d.u64()
	return d.finish("ChannelResp")
}

// appendFD appends an FDID's wire form (u64).
func appendFD(dst []byte, fd FDID) []byte { return appendU64(dst, uint64(fd)) }

// decodeFD decodes a payload that is one FDID; what names the message in
// errors.
func decodeFD(src []byte, fd *FDID, what string) error {
	d := decoder{buf: src}
	*fd = d.fdid()
	return d.finish(what)
}

// FDReq is the request of every MID whose payload is one FDID (8 bytes):
// FStat, FStatFS, ReadLinkAt, Flush and Accept.
type FDReq struct{ FD FDID }

// Append appends the wire form.
func (m *FDReq) Append(dst []byte) []byte { return appendFD(dst, m.FD) }

// Decode decodes the wire form.
func (m *FDReq) Decode(src []byte) error { return decodeFD(src, &m.FD, "FDReq") }

// SetStatReq is the SetStat request (64 bytes).
type SetStatReq struct {
	FD    FDID
	Mask  uint32
	Mode  uint32
	UID   uint32
	GID   uint32
	Size  uint64
	Atime Timespec
	Mtime Timespec
}

// Append appends the wire form.
func (m *SetStatReq) Append(dst []byte) []byte {
	dst = appendFD(dst, m.FD)
	dst = appendU32(dst, m.Mask)
	dst = appendU32(dst, m.Mode)
	dst = appendU32(dst, m.UID)
	dst = appendU32(dst, m.GID)
	dst = appendU64(dst, m.Size)
	dst = appendTimespec(dst, m.Atime)
	return appendTimespec(dst, m.Mtime)
}

// Decode decodes the wire form.
func (m *SetStatReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.FD = d.fdid()
	m.Mask = d.u32()
	m.Mode = d.u32()
	m.UID = d.u32()
	m.GID = d.u32()
	m.Size = d.u64()
	m.Atime = d.timespec()
	m.Mtime = d.timespec()
	return d.finish("SetStatReq")
}

// SetStatResp is the SetStat response (8 bytes).
type SetStatResp struct {
	FailureMask  uint32
	FailureErrNo uint32
}

// Append appends the wire form.
func (m *SetStatResp) Append(dst []byte) []byte {
	dst = appendU32(dst, m.FailureMask)
	return appendU32(dst, m.FailureErrNo)
}

// Decode decodes the wire form.
func (m *SetStatResp) Decode(src []byte) error {
	d := decoder{buf: src}
	m.FailureMask = d.u32()
	m.FailureErrNo = d.u32()
	return d.finish("SetStatResp")
}

// WalkReq is the Walk and WalkStat request: DirFD + StringArray.
type WalkReq struct {
	DirFD FDID
	Path  [][]byte // components; alias src after Decode; outer slice reused
}

// Append appends the wire form (at most MaxArrayLen components).
func (m *WalkReq) Append(dst []byte) []byte { return appendWalkReq(dst, m.DirFD, m.Path) }

func appendWalkReq[T text](dst []byte, dir FDID, path []T) []byte {
	dst = appendFD(dst, dir)
	return appendStringArray(dst, path)
}

// Decode decodes the wire form.
func (m *WalkReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.DirFD = d.fdid()
	m.Path = d.stringArray(m.Path[:0])
	return d.finish("WalkReq")
}

func appendStringArray[T text](dst []byte, a []T) []byte {
	n := clampCount(len(a))
	dst = appendU16(dst, uint16(n))
	for _, s := range a[:n] {
		dst = appendSized(dst, s)
	}
	return dst
}

func (d *decoder) stringArray(a [][]byte) [][]byte {
	n := d.count(2)
	for i := 0; i < n && !d.failed; i++ {
		a = append(a, d.sized())
	}
	if d.failed {
		return a[:0]
	}
	return a
}

// WalkResp is the Walk response: status, then inodes (3 + 152N bytes).
type WalkResp struct {
	Status WalkStatus
	Inodes []Inode // reused by Decode
}

// Append appends the wire form (at most MaxArrayLen inodes).
func (m *WalkResp) Append(dst []byte) []byte {
	dst = appendU8(dst, uint8(m.Status))
	n := clampCount(len(m.Inodes))
	dst = appendU16(dst, uint16(n))
	for i := range m.Inodes[:n] {
		dst = m.Inodes[i].Append(dst)
	}
	return dst
}

// Decode decodes the wire form.
func (m *WalkResp) Decode(src []byte) error {
	d := decoder{buf: src}
	m.Status = WalkStatus(d.u8())
	n := d.count(InodeSize)
	m.Inodes = m.Inodes[:0]
	for i := 0; i < n; i++ {
		var in Inode
		d.inode(&in)
		m.Inodes = append(m.Inodes, in)
	}
	return d.finish("WalkResp")
}

// WalkStatResp is the WalkStat response: stats (2 + 144N bytes).
type WalkStatResp struct {
	Stats []Statx // reused by Decode
}

// Append appends the wire form (at most MaxArrayLen stats).
func (m *WalkStatResp) Append(dst []byte) []byte {
	n := clampCount(len(m.Stats))
	dst = appendU16(dst, uint16(n))
	for i := range m.Stats[:n] {
		dst = m.Stats[i].Append(dst)
	}
	return dst
}

// Decode decodes the wire form.
func (m *WalkStatResp) Decode(src []byte) error {
	d := decoder{buf: src}
	n := d.count(StatxSize)
	m.Stats = m.Stats[:0]
	for i := 0; i < n; i++ {
		var s Statx
		d.statx(&s)
		m.Stats = append(m.Stats, s)
	}
	return d.finish("WalkStatResp")
}

// OpenAtReq is the OpenAt request (16 bytes).
type OpenAtReq struct {
	FD    FDID
	Flags uint32
}

// Append appends the wire form.
func (m *OpenAtReq) Append(dst []byte) []byte {
	dst = appendFD(dst, m.FD)
	dst = appendU32(dst, m.Flags)
	return appendU32(dst, 0)
}

// Decode decodes the wire form.
func (m *OpenAtReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.FD = d.fdid()
	m.Flags = d.u32()
	d.u32()
	return d.finish("OpenAtReq")
}

// OpenAtResp is the OpenAt response (8 bytes).
type OpenAtResp struct{ OpenFD FDID }

// Append appends the wire form.
func (m *OpenAtResp) Append(dst []byte) []byte { return appendFD(dst, m.OpenFD) }

// Decode decodes the wire form.
func (m *OpenAtResp) Decode(src []byte) error { return decodeFD(src, &m.OpenFD, "OpenAtResp") }

// createCommon is the 24-byte header shared by OpenCreateAt, MkdirAt,
// MknodAt and BindAt requests: DirFD, UID, GID, Mode, 6 pad bytes.
func appendCreateCommon(dst []byte, dir FDID, uid, gid uint32, mode uint16) []byte {
	dst = appendFD(dst, dir)
	dst = appendU32(dst, uid)
	dst = appendU32(dst, gid)
	dst = appendU16(dst, mode)
	dst = appendU16(dst, 0)
	return appendU32(dst, 0)
}

func (d *decoder) createCommon(dir *FDID, uid, gid *uint32, mode *uint16) {
	*dir = d.fdid()
	*uid = d.u32()
	*gid = d.u32()
	*mode = d.u16()
	d.take(6)
}

// OpenCreateAtReq is the OpenCreateAt request (28 + 2 + len(Name) bytes).
type OpenCreateAtReq struct {
	DirFD FDID
	UID   uint32
	GID   uint32
	Mode  uint16
	Flags uint32
	Name  []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *OpenCreateAtReq) Append(dst []byte) []byte {
	return appendOpenCreateAtReq(dst, m.DirFD, m.UID, m.GID, m.Mode, m.Flags, m.Name)
}

func appendOpenCreateAtReq[T text](dst []byte, dir FDID, uid, gid uint32, mode uint16, flags uint32, name T) []byte {
	dst = appendCreateCommon(dst, dir, uid, gid, mode)
	dst = appendU32(dst, flags)
	return appendSized(dst, name)
}

// Decode decodes the wire form.
func (m *OpenCreateAtReq) Decode(src []byte) error {
	d := decoder{buf: src}
	d.createCommon(&m.DirFD, &m.UID, &m.GID, &m.Mode)
	m.Flags = d.u32()
	m.Name = d.sized()
	return d.finish("OpenCreateAtReq")
}

// OpenCreateAtResp is the OpenCreateAt response (160 bytes).
type OpenCreateAtResp struct {
	Child Inode
	NewFD FDID
}

// Append appends the wire form.
func (m *OpenCreateAtResp) Append(dst []byte) []byte {
	dst = m.Child.Append(dst)
	return appendFD(dst, m.NewFD)
}

// Decode decodes the wire form.
func (m *OpenCreateAtResp) Decode(src []byte) error {
	d := decoder{buf: src}
	d.inode(&m.Child)
	m.NewFD = d.fdid()
	return d.finish("OpenCreateAtResp")
}

// FdArray is the Close and FSync request: u16 count + u64 FDIDs.
type FdArray struct {
	FDs []FDID // reused by Decode
}

// Append appends the wire form (at most MaxArrayLen FDIDs).
func (m *FdArray) Append(dst []byte) []byte {
	n := clampCount(len(m.FDs))
	dst = appendU16(dst, uint16(n))
	for _, fd := range m.FDs[:n] {
		dst = appendFD(dst, fd)
	}
	return dst
}

// Decode decodes the wire form.
func (m *FdArray) Decode(src []byte) error {
	d := decoder{buf: src}
	n := d.count(8)
	m.FDs = m.FDs[:0]
	for i := 0; i < n; i++ {
		m.FDs = append(m.FDs, d.fdid())
	}
	return d.finish("FdArray")
}

// PWriteReq is the PWrite request: Offset, FD, NumBytes u32, data
// (20 + len(Buf) bytes). NumBytes is len(Buf) on the wire.
type PWriteReq struct {
	Offset uint64
	FD     FDID
	Buf    []byte // aliases src after Decode
}

// Append appends the wire form. Buf must be shorter than 4 GiB.
func (m *PWriteReq) Append(dst []byte) []byte {
	dst = appendU64(dst, m.Offset)
	dst = appendFD(dst, m.FD)
	dst = appendU32(dst, uint32(len(m.Buf)))
	return append(dst, m.Buf...)
}

// Decode decodes the wire form; NumBytes must match the data exactly.
func (m *PWriteReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.Offset = d.u64()
	m.FD = d.fdid()
	n := d.u32()
	if uint64(n) > uint64(d.remaining()) {
		d.failed = true
	}
	m.Buf = d.take(int(n))
	return d.finish("PWriteReq")
}

// PWriteResp is the PWrite response (8 bytes).
type PWriteResp struct{ Count uint64 }

// Append appends the wire form.
func (m *PWriteResp) Append(dst []byte) []byte { return appendU64(dst, m.Count) }

// Decode decodes the wire form.
func (m *PWriteResp) Decode(src []byte) error {
	d := decoder{buf: src}
	m.Count = d.u64()
	return d.finish("PWriteResp")
}

// PReadReq is the PRead request (24 bytes).
type PReadReq struct {
	Offset uint64
	FD     FDID
	Count  uint32
}

// Append appends the wire form.
func (m *PReadReq) Append(dst []byte) []byte {
	dst = appendU64(dst, m.Offset)
	dst = appendFD(dst, m.FD)
	dst = appendU32(dst, m.Count)
	return appendU32(dst, 0)
}

// Decode decodes the wire form.
func (m *PReadReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.Offset = d.u64()
	m.FD = d.fdid()
	m.Count = d.u32()
	d.u32()
	return d.finish("PReadReq")
}

// PReadResp is the PRead response: u64 NumBytes then the data
// (8 + len(Buf) bytes).
type PReadResp struct {
	Buf []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *PReadResp) Append(dst []byte) []byte {
	dst = appendU64(dst, uint64(len(m.Buf)))
	return append(dst, m.Buf...)
}

// Decode decodes the wire form; NumBytes must match the data exactly.
func (m *PReadResp) Decode(src []byte) error {
	d := decoder{buf: src}
	n := d.u64()
	if n > uint64(d.remaining()) {
		d.failed = true
	}
	m.Buf = d.take(int(n))
	return d.finish("PReadResp")
}

// MkdirAtReq is the MkdirAt request (24 + 2 + len(Name) bytes).
type MkdirAtReq struct {
	DirFD FDID
	UID   uint32
	GID   uint32
	Mode  uint16
	Name  []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *MkdirAtReq) Append(dst []byte) []byte {
	return appendMkdirAtReq(dst, m.DirFD, m.UID, m.GID, m.Mode, m.Name)
}

func appendMkdirAtReq[T text](dst []byte, dir FDID, uid, gid uint32, mode uint16, name T) []byte {
	dst = appendCreateCommon(dst, dir, uid, gid, mode)
	return appendSized(dst, name)
}

// Decode decodes the wire form.
func (m *MkdirAtReq) Decode(src []byte) error {
	d := decoder{buf: src}
	d.createCommon(&m.DirFD, &m.UID, &m.GID, &m.Mode)
	m.Name = d.sized()
	return d.finish("MkdirAtReq")
}

// MknodAtReq is the MknodAt request (32 + 2 + len(Name) bytes).
type MknodAtReq struct {
	DirFD FDID
	UID   uint32
	GID   uint32
	Mode  uint16 // includes the file type
	Minor uint32
	Major uint32
	Name  []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *MknodAtReq) Append(dst []byte) []byte {
	return appendMknodAtReq(dst, m.DirFD, m.UID, m.GID, m.Mode, m.Minor, m.Major, m.Name)
}

func appendMknodAtReq[T text](dst []byte, dir FDID, uid, gid uint32, mode uint16, minor, major uint32, name T) []byte {
	dst = appendCreateCommon(dst, dir, uid, gid, mode)
	dst = appendU32(dst, minor)
	dst = appendU32(dst, major)
	return appendSized(dst, name)
}

// Decode decodes the wire form.
func (m *MknodAtReq) Decode(src []byte) error {
	d := decoder{buf: src}
	d.createCommon(&m.DirFD, &m.UID, &m.GID, &m.Mode)
	m.Minor = d.u32()
	m.Major = d.u32()
	m.Name = d.sized()
	return d.finish("MknodAtReq")
}

// SymlinkAtReq is the SymlinkAt request.
type SymlinkAtReq struct {
	DirFD  FDID
	UID    uint32
	GID    uint32
	Name   []byte // aliases src after Decode
	Target []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *SymlinkAtReq) Append(dst []byte) []byte {
	return appendSymlinkAtReq(dst, m.DirFD, m.UID, m.GID, m.Name, m.Target)
}

func appendSymlinkAtReq[T text](dst []byte, dir FDID, uid, gid uint32, name, target T) []byte {
	dst = appendFD(dst, dir)
	dst = appendU32(dst, uid)
	dst = appendU32(dst, gid)
	dst = appendSized(dst, name)
	return appendSized(dst, target)
}

// Decode decodes the wire form.
func (m *SymlinkAtReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.DirFD = d.fdid()
	m.UID = d.u32()
	m.GID = d.u32()
	m.Name = d.sized()
	m.Target = d.sized()
	return d.finish("SymlinkAtReq")
}

// LinkAtReq is the LinkAt request.
type LinkAtReq struct {
	DirFD  FDID
	Target FDID
	Name   []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *LinkAtReq) Append(dst []byte) []byte {
	return appendLinkAtReq(dst, m.DirFD, m.Target, m.Name)
}

func appendLinkAtReq[T text](dst []byte, dir, target FDID, name T) []byte {
	dst = appendFD(dst, dir)
	dst = appendFD(dst, target)
	return appendSized(dst, name)
}

// Decode decodes the wire form.
func (m *LinkAtReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.DirFD = d.fdid()
	m.Target = d.fdid()
	m.Name = d.sized()
	return d.finish("LinkAtReq")
}

// FAllocateReq is the FAllocate request (32 bytes).
type FAllocateReq struct {
	FD     FDID
	Mode   uint64
	Offset uint64
	Length uint64
}

// Append appends the wire form.
func (m *FAllocateReq) Append(dst []byte) []byte {
	dst = appendFD(dst, m.FD)
	dst = appendU64(dst, m.Mode)
	dst = appendU64(dst, m.Offset)
	return appendU64(dst, m.Length)
}

// Decode decodes the wire form.
func (m *FAllocateReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.FD = d.fdid()
	m.Mode = d.u64()
	m.Offset = d.u64()
	m.Length = d.u64()
	return d.finish("FAllocateReq")
}

// sizedOnly is the common shape of responses that are a single SizedString.
func decodeSizedOnly(src []byte, out *[]byte, what string) error {
	d := decoder{buf: src}
	*out = d.sized()
	return d.finish(what)
}

// ReadLinkAtResp is the ReadLinkAt response (a SizedString).
type ReadLinkAtResp struct {
	Target []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *ReadLinkAtResp) Append(dst []byte) []byte { return appendSized(dst, m.Target) }

// Decode decodes the wire form.
func (m *ReadLinkAtResp) Decode(src []byte) error {
	return decodeSizedOnly(src, &m.Target, "ReadLinkAtResp")
}

// ConnectReq is the Connect request (16 bytes).
type ConnectReq struct {
	FD       FDID
	SockType uint32
}

// Append appends the wire form.
func (m *ConnectReq) Append(dst []byte) []byte {
	dst = appendFD(dst, m.FD)
	dst = appendU32(dst, m.SockType)
	return appendU32(dst, 0)
}

// Decode decodes the wire form.
func (m *ConnectReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.FD = d.fdid()
	m.SockType = d.u32()
	d.u32()
	return d.finish("ConnectReq")
}

// ConnectWithCredsReq is the ConnectWithCreds request (24 bytes).
type ConnectWithCredsReq struct {
	FD       FDID
	SockType uint32
	UID      uint32
	GID      uint32
}

// Append appends the wire form.
func (m *ConnectWithCredsReq) Append(dst []byte) []byte {
	dst = appendFD(dst, m.FD)
	dst = appendU32(dst, m.SockType)
	dst = appendU32(dst, 0)
	dst = appendU32(dst, m.UID)
	return appendU32(dst, m.GID)
}

// Decode decodes the wire form.
func (m *ConnectWithCredsReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.FD = d.fdid()
	m.SockType = d.u32()
	d.u32()
	m.UID = d.u32()
	m.GID = d.u32()
	return d.finish("ConnectWithCredsReq")
}

// UnlinkAtReq is the UnlinkAt request.
type UnlinkAtReq struct {
	DirFD FDID
	Flags uint32
	Name  []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *UnlinkAtReq) Append(dst []byte) []byte {
	return appendUnlinkAtReq(dst, m.DirFD, m.Flags, m.Name)
}

func appendUnlinkAtReq[T text](dst []byte, dir FDID, flags uint32, name T) []byte {
	dst = appendFD(dst, dir)
	dst = appendU32(dst, flags)
	return appendSized(dst, name)
}

// Decode decodes the wire form.
func (m *UnlinkAtReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.DirFD = d.fdid()
	m.Flags = d.u32()
	m.Name = d.sized()
	return d.finish("UnlinkAtReq")
}

// RenameAtReq is the RenameAt request.
type RenameAtReq struct {
	OldDir  FDID
	NewDir  FDID
	OldName []byte // aliases src after Decode
	NewName []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *RenameAtReq) Append(dst []byte) []byte {
	return appendRenameAtReq(dst, m.OldDir, m.NewDir, m.OldName, m.NewName)
}

func appendRenameAtReq[T text](dst []byte, oldDir, newDir FDID, oldName, newName T) []byte {
	dst = appendFD(dst, oldDir)
	dst = appendFD(dst, newDir)
	dst = appendSized(dst, oldName)
	return appendSized(dst, newName)
}

func (d *decoder) renameAt(m *RenameAtReq) {
	m.OldDir = d.fdid()
	m.NewDir = d.fdid()
	m.OldName = d.sized()
	m.NewName = d.sized()
}

// Decode decodes the wire form.
func (m *RenameAtReq) Decode(src []byte) error {
	d := decoder{buf: src}
	d.renameAt(m)
	return d.finish("RenameAtReq")
}

// RenameAt2Req is the RenameAt2 request: RenameAtReq + u32 Flags (unaligned).
type RenameAt2Req struct {
	RenameAtReq
	Flags uint32
}

// Append appends the wire form.
func (m *RenameAt2Req) Append(dst []byte) []byte {
	dst = m.RenameAtReq.Append(dst)
	return appendU32(dst, m.Flags)
}

// Decode decodes the wire form.
func (m *RenameAt2Req) Decode(src []byte) error {
	d := decoder{buf: src}
	d.renameAt(&m.RenameAtReq)
	m.Flags = d.u32()
	return d.finish("RenameAt2Req")
}

// Getdents64Req is the Getdents64 request (16 bytes). A negative Count means
// "rewind first"; |Count| is a byte budget.
type Getdents64Req struct {
	DirFD FDID
	Count int32
}

// Append appends the wire form.
func (m *Getdents64Req) Append(dst []byte) []byte {
	dst = appendFD(dst, m.DirFD)
	dst = appendU32(dst, uint32(m.Count))
	return appendU32(dst, 0)
}

// Decode decodes the wire form.
func (m *Getdents64Req) Decode(src []byte) error {
	d := decoder{buf: src}
	m.DirFD = d.fdid()
	m.Count = int32(d.u32())
	d.u32()
	return d.finish("Getdents64Req")
}

// Getdents64Resp is the Getdents64 response: u16 N + N Dirent64 records.
// N = 0 means end of directory.
type Getdents64Resp struct {
	// Dirents is reused by Decode. The names do NOT alias src: Decode copies
	// all name bytes with a single allocation per call.
	Dirents []Dirent64
}

// Append appends the wire form (at most MaxArrayLen records).
func (m *Getdents64Resp) Append(dst []byte) []byte {
	n := clampCount(len(m.Dirents))
	dst = appendU16(dst, uint16(n))
	for i := range m.Dirents[:n] {
		dst = m.Dirents[i].Append(dst)
	}
	return dst
}

// Decode decodes the wire form.
func (m *Getdents64Resp) Decode(src []byte) error {
	d := decoder{buf: src}
	n := d.count(DirentHeaderSize)
	m.Dirents = m.Dirents[:0]
	if n == 0 {
		return d.finish("Getdents64Resp")
	}
	// One copy of the payload backs every name.
	s := string(src)
	for i := 0; i < n && !d.failed; i++ {
		var e Dirent64
		d.dirent(&e, s)
		m.Dirents = append(m.Dirents, e)
	}
	if d.failed {
		m.Dirents = m.Dirents[:0]
	}
	return d.finish("Getdents64Resp")
}

// FGetXattrReq is the FGetXattr request.
type FGetXattrReq struct {
	FD      FDID
	BufSize uint32
	Name    []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *FGetXattrReq) Append(dst []byte) []byte {
	return appendFGetXattrReq(dst, m.FD, m.BufSize, m.Name)
}

func appendFGetXattrReq[T text](dst []byte, fd FDID, bufSize uint32, name T) []byte {
	dst = appendFD(dst, fd)
	dst = appendU32(dst, bufSize)
	return appendSized(dst, name)
}

// Decode decodes the wire form.
func (m *FGetXattrReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.FD = d.fdid()
	m.BufSize = d.u32()
	m.Name = d.sized()
	return d.finish("FGetXattrReq")
}

// FGetXattrResp is the FGetXattr response (a SizedString).
type FGetXattrResp struct {
	Value []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *FGetXattrResp) Append(dst []byte) []byte { return appendSized(dst, m.Value) }

// Decode decodes the wire form.
func (m *FGetXattrResp) Decode(src []byte) error {
	return decodeSizedOnly(src, &m.Value, "FGetXattrResp")
}

// FSetXattrReq is the FSetXattr request.
type FSetXattrReq struct {
	FD    FDID
	Flags uint32
	Name  []byte // aliases src after Decode
	Value []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *FSetXattrReq) Append(dst []byte) []byte {
	return appendFSetXattrReq(dst, m.FD, m.Flags, m.Name, m.Value)
}

func appendFSetXattrReq[T text](dst []byte, fd FDID, flags uint32, name T, value []byte) []byte {
	dst = appendFD(dst, fd)
	dst = appendU32(dst, flags)
	dst = appendSized(dst, name)
	return appendSized(dst, value)
}

// Decode decodes the wire form.
func (m *FSetXattrReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.FD = d.fdid()
	m.Flags = d.u32()
	m.Name = d.sized()
	m.Value = d.sized()
	return d.finish("FSetXattrReq")
}

// FListXattrReq is the FListXattr request (16 bytes).
type FListXattrReq struct {
	FD   FDID
	Size uint64
}

// Append appends the wire form.
func (m *FListXattrReq) Append(dst []byte) []byte {
	dst = appendFD(dst, m.FD)
	return appendU64(dst, m.Size)
}

// Decode decodes the wire form.
func (m *FListXattrReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.FD = d.fdid()
	m.Size = d.u64()
	return d.finish("FListXattrReq")
}

// FListXattrResp is the FListXattr response (a StringArray).
type FListXattrResp struct {
	Xattrs [][]byte // names alias src after Decode; outer slice reused
}

// Append appends the wire form (at most MaxArrayLen names).
func (m *FListXattrResp) Append(dst []byte) []byte { return appendStringArray(dst, m.Xattrs) }

// Decode decodes the wire form.
func (m *FListXattrResp) Decode(src []byte) error {
	d := decoder{buf: src}
	m.Xattrs = d.stringArray(m.Xattrs[:0])
	return d.finish("FListXattrResp")
}

// FRemoveXattrReq is the FRemoveXattr request.
type FRemoveXattrReq struct {
	FD   FDID
	Name []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *FRemoveXattrReq) Append(dst []byte) []byte {
	return appendFRemoveXattrReq(dst, m.FD, m.Name)
}

func appendFRemoveXattrReq[T text](dst []byte, fd FDID, name T) []byte {
	dst = appendFD(dst, fd)
	return appendSized(dst, name)
}

// Decode decodes the wire form.
func (m *FRemoveXattrReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.FD = d.fdid()
	m.Name = d.sized()
	return d.finish("FRemoveXattrReq")
}

// BindAtReq is the BindAt request (28 + 2 + len(Name) bytes).
type BindAtReq struct {
	DirFD    FDID
	UID      uint32
	GID      uint32
	Mode     uint16
	SockType uint32
	Name     []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *BindAtReq) Append(dst []byte) []byte {
	dst = appendCreateCommon(dst, m.DirFD, m.UID, m.GID, m.Mode)
	dst = appendU32(dst, m.SockType)
	return appendSized(dst, m.Name)
}

// Decode decodes the wire form.
func (m *BindAtReq) Decode(src []byte) error {
	d := decoder{buf: src}
	d.createCommon(&m.DirFD, &m.UID, &m.GID, &m.Mode)
	m.SockType = d.u32()
	m.Name = d.sized()
	return d.finish("BindAtReq")
}

// BindAtResp is the BindAt response (160 bytes).
type BindAtResp struct {
	Child         Inode
	BoundSocketFD FDID
}

// Append appends the wire form.
func (m *BindAtResp) Append(dst []byte) []byte {
	dst = m.Child.Append(dst)
	return appendFD(dst, m.BoundSocketFD)
}

// Decode decodes the wire form.
func (m *BindAtResp) Decode(src []byte) error {
	d := decoder{buf: src}
	d.inode(&m.Child)
	m.BoundSocketFD = d.fdid()
	return d.finish("BindAtResp")
}

// ListenReq is the Listen request (16 bytes).
type ListenReq struct {
	FD      FDID
	Backlog int32
}

// Append appends the wire form.
func (m *ListenReq) Append(dst []byte) []byte {
	dst = appendFD(dst, m.FD)
	dst = appendU32(dst, uint32(m.Backlog))
	return appendU32(dst, 0)
}

// Decode decodes the wire form.
func (m *ListenReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.FD = d.fdid()
	m.Backlog = int32(d.u32())
	d.u32()
	return d.finish("ListenReq")
}

// AcceptResp is the Accept response (a SizedString peer address).
type AcceptResp struct {
	PeerAddr []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *AcceptResp) Append(dst []byte) []byte { return appendSized(dst, m.PeerAddr) }

// Decode decodes the wire form.
func (m *AcceptResp) Decode(src []byte) error {
	return decodeSizedOnly(src, &m.PeerAddr, "AcceptResp")
}

// dirent decodes one Dirent64 record; s is string(d.buf), which the name
// slices so that a whole reply costs one allocation.
func (d *decoder) dirent(e *Dirent64, s string) {
	e.Ino = d.u64()
	e.DevMinor = d.u32()
	e.DevMajor = d.u32()
	e.Off = d.u64()
	e.Type = d.u8()
	l := int(d.u16())
	start := d.off
	d.take(l)
	if !d.failed {
		e.Name = s[start : start+l]
	}
}
