package overlay

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"overlayfs/upper"
)

// ImportTar applies an OCI image layer (as ExportTar writes it, or any
// image layer) to the upper layer: files are created in the upper with the
// archive's metadata and data, `.wh.NAME` hides a lower name, `.wh..wh..opq`
// hides everything the lower has in a directory. Call it after New and
// before the FS is mounted. Runs of zeros in file data become holes. A bad archive is
// an error naming the entry; the layer may then be partly applied.
func (u UpperLayer) ImportTar(r io.Reader) error {
	im := &importer{fs: u.fs, mine: make(map[*Node]bool), buf: make([]byte, 1<<20)}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		if err := im.apply(h, tr); err != nil {
			return fmt.Errorf("layer entry %q: %w", h.Name, err)
		}
	}
}

type importer struct {
	fs   *FS
	mine map[*Node]bool // nodes this layer created or set
	buf  []byte
}

// split cleans an archive name into its directory components and base name;
// base is "" for the root.
func split(name string) ([]string, string) {
	p := path.Clean("/" + name)
	if p == "/" {
		return nil, ""
	}
	parts := strings.Split(p[1:], "/")
	return parts[:len(parts)-1], parts[len(parts)-1]
}

func (im *importer) apply(h *tar.Header, tr *tar.Reader) error {
	dirs, base := split(h.Name)
	if base == "" {
		if h.Typeflag != tar.TypeDir {
			return fmt.Errorf("the root must be a directory")
		}
		return im.setMeta(im.fs.root, h)
	}
	d, err := im.dir(dirs)
	if err != nil {
		return err
	}
	switch {
	case base == opaqueMarker:
		return im.opaque(d)
	case strings.HasPrefix(base, whiteoutPrefix):
		return im.whiteout(d, strings.TrimPrefix(base, whiteoutPrefix))
	case h.Typeflag == tar.TypeChar && h.Devmajor == 0 && h.Devminor == 0:
		return im.whiteout(d, base) // overlayfs-style whiteout
	}
	return im.add(d, base, h, tr)
}

// dir resolves (creating if missing) the directory of an entry.
func (im *importer) dir(parts []string) (*Node, error) {
	d := im.fs.root
	for i, name := range parts {
		if name == opaqueMarker || strings.HasPrefix(name, whiteoutPrefix) {
			return nil, fmt.Errorf("a whiteout cannot be a directory")
		}
		c, err := im.fs.res.lookupChild(d, name)
		if err == unix.ENOENT {
			c, err = im.attach(d, name, &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755})
		}
		if err != nil {
			return nil, err
		}
		if !c.isDir() {
			return nil, fmt.Errorf("/%s is not a directory", strings.Join(parts[:i+1], "/"))
		}
		d = c
	}
	return d, nil
}

// setMeta gives n the header's metadata, copying it up.
func (im *importer) setMeta(n *Node, h *tar.Header) error {
	if err := im.fs.copier.copyUp(n, false); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	setAttr(n.up, h)
	n.up.Xattrs = paxXattrs(h)
	n.lazyX = false
	im.mine[n] = true
	return nil
}

func setAttr(in *upper.Inode, h *tar.Header) {
	in.Mode = in.Mode&unix.S_IFMT | uint32(h.Mode)&0o7777
	in.UID, in.GID = uint32(h.Uid), uint32(h.Gid)
	if !h.ModTime.IsZero() {
		in.Mtime = unix.NsecToTimespec(h.ModTime.UnixNano())
		in.Atime, in.Ctime = in.Mtime, in.Mtime
	}
	if !h.AccessTime.IsZero() {
		in.Atime = unix.NsecToTimespec(h.AccessTime.UnixNano())
	}
	if !h.ChangeTime.IsZero() {
		in.Ctime = unix.NsecToTimespec(h.ChangeTime.UnixNano())
	}
}

func paxXattrs(h *tar.Header) map[string][]byte {
	var x map[string][]byte
	for k, v := range h.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || overlayXattr(name) {
			continue
		}
		if x == nil {
			x = make(map[string][]byte)
		}
		x[name] = []byte(v)
	}
	return x
}

// detach removes d's child name (a node not from this layer), leaving a
// whiteout if the lower has the name.
func (im *importer) detach(d *Node, name string, c *Node) error {
	fs := im.fs
	wh := fs.res.lowerHas(d.lower, name)
	for _, n := range []*Node{d, c} {
		if err := fs.copier.copyUp(n, false); err != nil {
			return err
		}
	}
	// The layer sets d's times; removing a name must not touch them.
	d.mu.Lock()
	mtime, ctime := d.up.Mtime, d.up.Ctime
	d.mu.Unlock()
	d.dirMu.Lock()
	if c.isDir() {
		c.dirMu.Lock() // d's child: ancestor before descendant
	}
	fs.ns.detachLocked(d, name, c, wh)
	if c.isDir() {
		c.dirMu.Unlock()
	}
	d.dirMu.Unlock()
	d.mu.Lock()
	d.up.Mtime, d.up.Ctime = mtime, ctime
	d.mu.Unlock()
	fs.reaper.maybeDrop(c)
	return nil
}

// whiteout hides name in d, unless this layer itself put it there.
func (im *importer) whiteout(d *Node, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	c, err := im.fs.res.lookupChild(d, name)
	switch {
	case err == unix.ENOENT:
		return nil // nothing to hide
	case err != nil:
		return err
	case im.mine[c]:
		return nil
	}
	return im.detach(d, name, c)
}

// opaque hides every lower name of d that this layer did not put there.
func (im *importer) opaque(d *Node) error {
	fs := im.fs
	if err := fs.copier.copyUp(d, false); err != nil {
		return err
	}
	d.mu.Lock()
	d.opaque = true
	d.mu.Unlock()
	ldir := d.lower
	if ldir == nil {
		return nil
	}
	ents, err := fs.lower.ReadDir(ldir)
	if err != nil {
		return err
	}
	for i := range ents {
		name := ents[i].Name
		d.dirMu.Lock()
		c := d.children[name]
		d.dirMu.Unlock()
		if c != nil && im.mine[c] {
			continue
		}
		if c != nil {
			if err := im.detach(d, name, c); err != nil {
				return err
			}
			continue
		}
		d.dirMu.Lock()
		d.whiteouts[name] = struct{}{}
		d.dirMu.Unlock()
	}
	return nil
}

// add creates (or, for a directory over a directory, updates) name in d.
func (im *importer) add(d *Node, name string, h *tar.Header, tr *tar.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	old, err := im.fs.res.lookupChild(d, name)
	if err != nil && err != unix.ENOENT {
		return err
	}
	if old != nil && old.isDir() && h.Typeflag == tar.TypeDir {
		return im.setMeta(old, h)
	}
	if old != nil {
		if old.isDir() && im.mine[old] {
			return fmt.Errorf("the layer replaces its own directory")
		}
		// Replaced: no whiteout needed, the new child shadows the name.
		if err := im.detach(d, name, old); err != nil {
			return err
		}
	}
	n, err := im.attach(d, name, h)
	if err != nil || h.Typeflag != tar.TypeReg {
		return err
	}
	return im.fill(n, h.Size, tr)
}

// attach makes the node a header describes and links it as d's name.
func (im *importer) attach(d *Node, name string, h *tar.Header) (*Node, error) {
	fs := im.fs
	var n *Node
	if h.Typeflag == tar.TypeLink {
		dirs, base := split(h.Linkname)
		ld, err := im.dir(dirs)
		if err != nil {
			return nil, fmt.Errorf("hard link target %s: %w", h.Linkname, err)
		}
		if n, err = fs.res.lookupChild(ld, base); err != nil {
			return nil, fmt.Errorf("hard link target %s: %w", h.Linkname, err)
		}
		if n.isDir() {
			return nil, fmt.Errorf("hard link target %s is a directory", h.Linkname)
		}
		if err := fs.copier.copyUp(n, false); err != nil {
			return nil, err
		}
		n.mu.Lock()
		n.up.Nlink++
		n.mu.Unlock()
	} else {
		var typ, rdev uint32
		switch h.Typeflag {
		case tar.TypeDir:
			typ = unix.S_IFDIR
		case tar.TypeReg:
			typ = unix.S_IFREG
		case tar.TypeSymlink:
			typ = unix.S_IFLNK
			if len(h.Linkname) > maxSymlinkLen || h.Linkname == "" {
				return nil, fmt.Errorf("bad symlink target")
			}
		case tar.TypeChar, tar.TypeBlock:
			typ = unix.S_IFCHR
			if h.Typeflag == tar.TypeBlock {
				typ = unix.S_IFBLK
			}
			rdev = uint32(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))
		case tar.TypeFifo:
			typ = unix.S_IFIFO
		default:
			return nil, fmt.Errorf("unsupported entry type %q", h.Typeflag)
		}
		n = fs.nodes.newUpperNode(typ|uint32(h.Mode)&0o7777, uint32(h.Uid), uint32(h.Gid), rdev)
		n.mu.Lock()
		setAttr(n.up, h)
		n.up.Xattrs = paxXattrs(h)
		if typ == unix.S_IFLNK {
			n.up.Target = h.Linkname
		}
		n.mu.Unlock()
	}
	if err := fs.copier.copyUp(d, false); err != nil {
		return nil, err
	}
	d.dirMu.Lock()
	delete(d.whiteouts, name)
	d.setChild(name, n)
	if n.isDir() {
		n.parent = d // a new node: nobody else sees it yet
	}
	d.dirMu.Unlock()
	im.mine[n] = true
	return n, nil
}

// fill reads size bytes of file data into n's upper data, leaving all-zero
// pages as holes.
func (im *importer) fill(n *Node, size int64, r io.Reader) error {
	const page = 4096
	n.mu.Lock()
	defer n.mu.Unlock()
	var off int64
	for off < size {
		p := im.buf[:min(int64(len(im.buf)), size-off)]
		if _, err := io.ReadFull(r, p); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		// Write each run of pages that are not all zeros.
		start := -1
		for i := 0; ; i = min(i+page, len(p)) {
			zero := i == len(p) || allZero(p[i:min(i+page, len(p))])
			if !zero && start < 0 {
				start = i
			}
			if zero && start >= 0 {
				if err := n.up.Fill(p[start:i], off+int64(start)); err != nil {
					return err
				}
				start = -1
			}
			if i == len(p) {
				break
			}
		}
		off += int64(len(p))
	}
	return n.up.SetSize(size)
}

func allZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}
