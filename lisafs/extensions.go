package lisafs

import (
	"golang.org/x/sys/unix"
)

// Extensions. LISAFS reserves MIDs 0–255 for the standard protocol and lets
// implementations add their own above. This server answers the extensions
// below but does not advertise them in MountResp.SupportedMs, so that the
// Mount reply stays byte-for-byte what gVisor's gofer sends; a client finds
// out by trying (a server without them answers EOPNOTSUPP, as gVisor's does
// for any unknown MID) and remembers the answer.

// MIDGetdents64Stat lists a directory like Getdents64 and adds each entry's
// full Statx (taken with AT_SYMLINK_NOFOLLOW), so that a client can answer
// lookups of listed names without a Walk per name.
//
// Request: Getdents64Req. Response Getdents64StatResp: N u16, then N records
// of a Dirent64 record (as in Getdents64Resp) followed by a Statx (144).
const MIDGetdents64Stat MID = 256

// DirentStat is one entry of a Getdents64Stat reply.
type DirentStat struct {
	Dirent64
	Stat Statx
}

// Getdents64StatResp is the Getdents64Stat response.
type Getdents64StatResp struct {
	// Dirents is reused by Decode; names do not alias src.
	Dirents []DirentStat
}

// Append appends the wire form (at most MaxArrayLen records).
func (m *Getdents64StatResp) Append(dst []byte) []byte {
	n := clampCount(len(m.Dirents))
	dst = appendU16(dst, uint16(n))
	for i := range m.Dirents[:n] {
		dst = m.Dirents[i].Dirent64.Append(dst)
		dst = m.Dirents[i].Stat.Append(dst)
	}
	return dst
}

// Decode decodes the wire form.
func (m *Getdents64StatResp) Decode(src []byte) error {
	d := decoder{buf: src}
	n := d.count(DirentHeaderSize + StatxSize)
	m.Dirents = m.Dirents[:0]
	if n == 0 {
		return d.finish("Getdents64StatResp")
	}
	s := string(src) // one copy backs every name
	for i := 0; i < n && !d.failed; i++ {
		var e DirentStat
		d.dirent(&e.Dirent64, s)
		d.statx(&e.Stat)
		m.Dirents = append(m.Dirents, e)
	}
	if d.failed {
		m.Dirents = m.Dirents[:0]
	}
	return d.finish("Getdents64StatResp")
}

// Getdents64Stat is Getdents64 with each entry's Statx (an extension: see
// MIDGetdents64Stat). A server without the extension makes it fail with
// EOPNOTSUPP, and every later call fails the same way at once.
func (c *Client) Getdents64Stat(dirOpenFD FDID, count int32) ([]DirentStat, error) {
	if c.noDirentStat.Load() {
		return nil, unix.EOPNOTSUPP
	}
	if c.dead.Load() {
		return nil, unix.EIO
	}
	m, err := c.take()
	if err != nil {
		return nil, err
	}
	defer c.end(m)
	m.wbuf = (&Getdents64Req{DirFD: dirOpenFD, Count: count}).Append(m.wbuf[:0])
	var resp Getdents64StatResp
	if err := m.call(MIDGetdents64Stat, &resp); err != nil {
		if err == unix.EOPNOTSUPP {
			c.noDirentStat.Store(true)
		}
		return nil, err
	}
	return resp.Dirents, nil
}

// handleGetdents64Stat serves MIDGetdents64Stat.
func handleGetdents64Stat(cc *request, payload []byte) ([]byte, []int, error) {
	return getdents(cc, payload, true)
}
