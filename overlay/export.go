package overlay

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/upper"
)

// OCI whiteout names (image-spec layer.md).
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// ExportTar writes the upper layer as an OCI image layer: every file the
// overlay added or changed with its full metadata (numeric owner, mode,
// nanosecond times and xattrs in PAX records) and data, `.wh.NAME` for a
// deleted lower name, `.wh..wh..opq` in a directory that replaces a lower
// one, and a hard link entry for each further name of a file. Holes of
// sparse files are written as zeros. Applying the layer on the lower gives
// the merged view; for a consistent layer, stop writers first.
func (u UpperLayer) ExportTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	x := &exporter{fs: u.fs, tw: tw, first: make(map[*Node]string), buf: make([]byte, 1<<20)}
	if err := x.root(); err != nil {
		return err
	}
	if err := u.walkChanges(x.entry); err != nil {
		return err
	}
	return tw.Close()
}

type exporter struct {
	fs    *FS
	tw    *tar.Writer
	first map[*Node]string // the archive name a multiply linked file was written under
	buf   []byte
}

// root writes the root directory's metadata if the overlay changed it.
func (x *exporter) root() error {
	r := x.fs.root
	if !hasUpper(r) {
		return nil
	}
	return x.write("./", r)
}

func (x *exporter) entry(e changeEntry) error {
	name := strings.TrimPrefix(e.path, "/")
	if e.node == nil {
		if !e.whiteout {
			return nil // covered by an opaque marker above
		}
		dir, base := path.Split(name)
		return x.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: dir + whiteoutPrefix + base, Mode: 0o644, Format: tar.FormatPAX, ModTime: time.Unix(0, 0)})
	}
	if e.node.isDir() {
		name += "/"
	}
	if err := x.write(name, e.node); err != nil {
		return err
	}
	if e.opaque {
		return x.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name + opaqueMarker, Mode: 0o644, Format: tar.FormatPAX, ModTime: time.Unix(0, 0)})
	}
	return nil
}

// nodeMeta is a copy of what a tar header needs of a node.
type nodeMeta struct {
	attr    upper.Attr
	size    int64
	target  string
	xattrs  map[string][]byte
	upData  bool // data in the upper store
	lazyX   bool // xattrs still in the lower
	hasUp   bool
	linkCnt uint32
}

// meta snapshots n under n.mu; lower-only facts are filled without locks.
func (x *exporter) meta(n *Node) (nodeMeta, error) {
	var m nodeMeta
	n.mu.Lock()
	if n.up != nil {
		m.hasUp = true
		n.up.SyncTimes()
		m.attr = n.up.Attr
		m.target = n.up.Target
		m.upData = n.up.HasData
		m.lazyX = n.lazyX
		if m.upData {
			m.size = n.up.DataSize()
		} else if n.lower != nil {
			m.size = int64(n.lower.Attr().Size)
		}
		if !m.lazyX && len(n.up.Xattrs) > 0 {
			m.xattrs = make(map[string][]byte, len(n.up.Xattrs))
			for k, v := range n.up.Xattrs {
				m.xattrs[k] = append([]byte(nil), v...)
			}
		}
	}
	n.mu.Unlock()
	if !m.hasUp {
		st := n.lower.Attr()
		m.attr = upperAttr(&st)
		m.size = int64(st.Size)
		m.lazyX = true
	}
	m.linkCnt = m.attr.Nlink
	if m.lazyX && n.lower != nil {
		xs, err := x.fs.lower.Xattrs(n.lower)
		if err != nil {
			return m, err
		}
		m.xattrs = xs
	}
	if n.typ == unix.S_IFLNK && !m.hasUp {
		t, err := x.fs.lower.Readlink(n.lower)
		if err != nil {
			return m, err
		}
		m.target = t
	}
	return m, nil
}

func tspec(t unix.Timespec) time.Time { return time.Unix(t.Sec, t.Nsec) }

// write writes one file's header and data.
func (x *exporter) write(name string, n *Node) error {
	if prev, ok := x.first[n]; ok {
		return x.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: prev, Format: tar.FormatPAX, ModTime: time.Unix(0, 0)})
	}
	m, err := x.meta(n)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	h := &tar.Header{
		Name:       name,
		Mode:       int64(m.attr.Mode & 0o7777),
		Uid:        int(m.attr.UID),
		Gid:        int(m.attr.GID),
		ModTime:    tspec(m.attr.Mtime),
		AccessTime: tspec(m.attr.Atime),
		ChangeTime: tspec(m.attr.Ctime),
		Format:     tar.FormatPAX,
	}
	for k, v := range m.xattrs {
		if overlayXattr(k) {
			continue
		}
		if h.PAXRecords == nil {
			h.PAXRecords = make(map[string]string)
		}
		h.PAXRecords["SCHILY.xattr."+k] = string(v)
	}
	switch n.typ {
	case unix.S_IFDIR:
		h.Typeflag = tar.TypeDir
	case unix.S_IFREG:
		h.Typeflag = tar.TypeReg
		h.Size = m.size
	case unix.S_IFLNK:
		h.Typeflag = tar.TypeSymlink
		h.Linkname = m.target
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if n.typ == unix.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor = int64(unix.Major(uint64(m.attr.Rdev)))
		h.Devminor = int64(unix.Minor(uint64(m.attr.Rdev)))
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	default:
		return nil // sockets have no tar form
	}
	if err := x.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if n.typ != unix.S_IFDIR && m.linkCnt > 1 {
		x.first[n] = name
	}
	if n.typ != unix.S_IFREG || m.size == 0 {
		return nil
	}
	if err := x.data(n, m); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// data copies a regular file's contents, exactly m.size bytes (zeros past
// an end that moved meanwhile).
func (x *exporter) data(n *Node, m nodeMeta) error {
	var readAt func(p []byte, off int64) (int, error)
	if m.upData {
		readAt = func(p []byte, off int64) (int, error) {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.up == nil || !n.up.HasData {
				return 0, io.EOF
			}
			return n.up.ReadAt(p, off)
		}
	} else {
		fd, err := x.fs.lower.OpenData(n.lower)
		if err != nil {
			return err
		}
		defer x.fs.lower.ReleaseData(n.lower)
		readAt = func(p []byte, off int64) (int, error) {
			c, err := unix.Pread(fd, p, off)
			if err == nil && c == 0 {
				err = io.EOF
			}
			return c, err
		}
	}
	var off int64
	for off < m.size {
		p := x.buf[:min(int64(len(x.buf)), m.size-off)]
		c, err := readAt(p, off)
		if c < len(p) && (err == nil || errors.Is(err, io.EOF)) {
			if c == 0 {
				clear(p) // the file shrank: pad
				c = len(p)
			}
		} else if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if _, err := x.tw.Write(p[:c]); err != nil {
			return err
		}
		off += int64(c)
	}
	return nil
}
