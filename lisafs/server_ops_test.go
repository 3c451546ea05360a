package lisafs

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNewServerRootErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, "x")
	for _, root := range []string{filepath.Join(dir, "missing"), file, ""} {
		_, err := NewServer(Config{Root: root})
		if err == nil {
			t.Fatalf("NewServer(%q) succeeded", root)
		}
		if root != "" && !strings.Contains(err.Error(), root) {
			t.Errorf("error %q does not name %q", err, root)
		}
	}
}

func TestMountAdvertisesAndDonatesRoot(t *testing.T) {
	root := t.TempDir()
	p := dial(t, startServer(t, root, false))
	var r MountResp
	fds := p.must(MIDMount, nil, &r)
	if r.MaxMessageSize != MaxMessageSize {
		t.Errorf("max message size %d", r.MaxMessageSize)
	}
	var want []MID
	for m := MIDMount; m <= MIDMax; m++ {
		if m != MIDFlush { // gVisor's gofer's set: every MID but Flush
			want = append(want, m)
		}
	}
	if !slices.Equal(r.SupportedMs, want) {
		t.Errorf("supported %v, want %v", r.SupportedMs, want)
	}
	if r.Root.ControlFD != 1 {
		t.Errorf("root FDID %d, want 1", r.Root.ControlFD)
	}
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err != nil {
		t.Fatal(err)
	}
	if r.Root.Stat.Ino != st.Ino || fileType(r.Root.Stat.Mode) != unix.S_IFDIR {
		t.Errorf("root stat ino %d mode %o, want ino %d dir", r.Root.Stat.Ino, r.Root.Stat.Mode, st.Ino)
	}
	if len(fds) != 1 {
		t.Fatalf("mount donated %d fds", len(fds))
	}
	var dst unix.Stat_t
	if err := unix.Fstat(fds[0], &dst); err != nil || dst.Ino != st.Ino {
		t.Errorf("donated fd: ino %d err %v, want %d", dst.Ino, err, st.Ino)
	}
	// A second Mount gets a fresh FDID: FDIDs are never reused.
	var r2 MountResp
	p.must(MIDMount, nil, &r2)
	if r2.Root.ControlFD != 2 {
		t.Errorf("second mount FDID %d, want 2", r2.Root.ControlFD)
	}
}

func TestUnsupportedMIDs(t *testing.T) {
	p := dial(t, startServer(t, "", false))
	p.mount()
	for _, mid := range []MID{MIDError, MIDFlush, 34, 255, 4000, 65535} {
		rmid, out, _ := p.roundTrip(mid, nil, 0)
		var e ErrorResp
		if rmid != MIDError || e.Decode(out) != nil || unix.Errno(e.Errno) != unix.EOPNOTSUPP {
			t.Errorf("MID %d: got MID %v payload %x, want EOPNOTSUPP", mid, rmid, out)
		}
	}
}

func TestFileLifecycle(t *testing.T) {
	root := t.TempDir()
	p := dial(t, startServer(t, root, false))
	rootFD := p.mount()

	// Create, write through the FDID, read back through FDID and donated fd.
	var cr OpenCreateAtResp
	fds := p.must(MIDOpenCreateAt, &OpenCreateAtReq{DirFD: rootFD, UID: NoUID, GID: NoGID,
		Mode: 0o640, Flags: unix.O_RDWR, Name: []byte("f")}, &cr)
	if len(fds) != 1 {
		t.Fatalf("OpenCreateAt donated %d fds", len(fds))
	}
	if m := cr.Child.Stat.Mode; m != unix.S_IFREG|0o640 {
		t.Errorf("created mode %o, want exact 0640 regardless of umask", m)
	}
	var wr PWriteResp
	p.must(MIDPWrite, &PWriteReq{FD: cr.NewFD, Offset: 3, Buf: []byte("hello")}, &wr)
	if wr.Count != 5 {
		t.Fatalf("wrote %d", wr.Count)
	}
	got := make([]byte, 16)
	n, err := unix.Pread(fds[0], got, 0)
	if err != nil || string(got[:n]) != "\x00\x00\x00hello" {
		t.Errorf("donated fd read %q %v", got[:n], err)
	}
	var rr PReadResp
	p.must(MIDPRead, &PReadReq{FD: cr.NewFD, Offset: 3, Count: 100}, &rr)
	if string(rr.Buf) != "hello" {
		t.Errorf("PRead %q", rr.Buf)
	}
	p.must(MIDPRead, &PReadReq{FD: cr.NewFD, Offset: 100, Count: 10}, &rr)
	if len(rr.Buf) != 0 {
		t.Errorf("PRead past EOF returned %d bytes", len(rr.Buf))
	}
	p.must(MIDFSync, &FdArray{FDs: []FDID{cr.NewFD}}, nil)
	p.must(MIDFAllocate, &FAllocateReq{FD: cr.NewFD, Offset: 0, Length: 4096}, nil)

	// OpenAt on a fresh walk donates a dup with O_NONBLOCK.
	ctl := p.walkOne(rootFD, "f")
	ofd, dfds := p.open(ctl, unix.O_RDONLY)
	if len(dfds) != 1 {
		t.Fatalf("OpenAt donated %d fds", len(dfds))
	}
	if fl, _ := unix.FcntlInt(uintptr(dfds[0]), unix.F_GETFL, 0); fl&unix.O_NONBLOCK == 0 {
		t.Errorf("donated fd not O_NONBLOCK")
	}
	n, _ = unix.Pread(dfds[0], got[:5], 3)
	if string(got[:n]) != "hello" {
		t.Errorf("donated OpenAt fd read %q", got[:n])
	}
	p.wantErr(MIDPWrite, &PWriteReq{FD: ofd, Buf: []byte("x")}, unix.EBADF)
	p.wantErr(MIDFAllocate, &FAllocateReq{FD: ofd, Length: 1}, unix.EBADF)

	// SetStat: mode, size, times; then FStat sees them.
	var sr SetStatResp
	p.must(MIDSetStat, &SetStatReq{FD: ctl, Mask: unix.STATX_MODE | unix.STATX_SIZE | unix.STATX_MTIME | unix.STATX_ATIME,
		Mode: 0o600, Size: 2, Atime: Timespec{Sec: 1000}, Mtime: Timespec{Sec: 2000, Nsec: 5}}, &sr)
	if sr.FailureMask != 0 {
		t.Fatalf("SetStat failures %#x errno %d", sr.FailureMask, sr.FailureErrNo)
	}
	var st Statx
	p.must(MIDFStat, &FDReq{FD: ctl}, &st)
	if st.Mode&0o7777 != 0o600 || st.Size != 2 || st.Mtime.Sec != 2000 || st.Mtime.Nsec != 5 || st.Atime.Sec != 1000 {
		t.Errorf("after SetStat: mode %o size %d mtime %v atime %v", st.Mode, st.Size, st.Mtime, st.Atime)
	}
	// Open FDIDs can be stat'ed too.
	p.must(MIDFStat, &FDReq{FD: ofd}, &st)
	p.wantErr(MIDSetStat, &SetStatReq{FD: ctl, Mask: 0x1000}, unix.EPERM)
	p.wantErr(MIDSetStat, &SetStatReq{FD: ofd, Mask: unix.STATX_MODE}, unix.EINVAL)

	// Truncating through OpenAt.
	tfd, _ := p.open(ctl, unix.O_WRONLY|unix.O_TRUNC)
	p.must(MIDFStat, &FDReq{FD: tfd}, &st)
	if st.Size != 0 {
		t.Errorf("O_TRUNC left size %d", st.Size)
	}

	// Close: later use is EBADF; unknown FDIDs are ignored.
	p.must(MIDClose, &FdArray{FDs: []FDID{ofd, tfd, 9999}}, nil)
	p.wantErr(MIDPRead, &PReadReq{FD: ofd, Count: 1}, unix.EBADF)
	p.wantErr(MIDFSync, &FdArray{FDs: []FDID{ctl}}, unix.EINVAL)

	// Exclusive create.
	p.wantErr(MIDOpenCreateAt, &OpenCreateAtReq{DirFD: rootFD, UID: NoUID, GID: NoGID, Mode: 0o644, Name: []byte("f")}, unix.EEXIST)
	p.wantErr(MIDOpenCreateAt, &OpenCreateAtReq{DirFD: ctl, UID: NoUID, GID: NoGID, Mode: 0o644, Name: []byte("g")}, unix.ENOTDIR)
}

func TestDirectoryOps(t *testing.T) {
	root := t.TempDir()
	p := dial(t, startServer(t, root, false))
	rootFD := p.mount()

	var d Inode
	p.must(MIDMkdirAt, &MkdirAtReq{DirFD: rootFD, UID: NoUID, GID: NoGID, Mode: 0o750, Name: []byte("d")}, &d)
	if d.Stat.Mode != unix.S_IFDIR|0o750 {
		t.Errorf("mkdir mode %o", d.Stat.Mode)
	}
	p.wantErr(MIDMkdirAt, &MkdirAtReq{DirFD: rootFD, UID: NoUID, GID: NoGID, Mode: 0o750, Name: []byte("d")}, unix.EEXIST)
	// Modes are applied exactly, whatever the process umask (set one that
	// would interfere for the duration of these creates).
	old := unix.Umask(0o077)
	var open0777 Inode
	p.must(MIDMkdirAt, &MkdirAtReq{DirFD: rootFD, UID: NoUID, GID: NoGID, Mode: 0o777, Name: []byte("wide")}, &open0777)
	var wideFile OpenCreateAtResp
	p.must(MIDOpenCreateAt, &OpenCreateAtReq{DirFD: rootFD, UID: NoUID, GID: NoGID, Mode: 0o666, Name: []byte("widef")}, &wideFile)
	unix.Umask(old)
	for _, n := range []string{"wide", "widef"} {
		fi, err := os.Stat(filepath.Join(root, n))
		want := os.FileMode(0o666)
		if n == "wide" {
			want = 0o777
		}
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v %v, want %v", n, fi.Mode().Perm(), err, want)
		}
	}
	p.must(MIDUnlinkAt, &UnlinkAtReq{DirFD: rootFD, Name: []byte("wide"), Flags: unix.AT_REMOVEDIR}, nil)
	p.must(MIDUnlinkAt, &UnlinkAtReq{DirFD: rootFD, Name: []byte("widef")}, nil)

	var f, wh, sl, ln Inode
	p.must(MIDMknodAt, &MknodAtReq{DirFD: d.ControlFD, UID: 1234, GID: 4321, Mode: unix.S_IFREG | 0o644, Name: []byte("file")}, &f)
	if f.Stat.UID != 1234 || f.Stat.GID != 4321 {
		t.Errorf("mknod owner %d:%d", f.Stat.UID, f.Stat.GID)
	}
	p.must(MIDMknodAt, &MknodAtReq{DirFD: d.ControlFD, UID: NoUID, GID: NoGID, Mode: unix.S_IFCHR, Name: []byte("wh")}, &wh)
	if fileType(wh.Stat.Mode) != unix.S_IFCHR || wh.Stat.RdevMajor != 0 || wh.Stat.RdevMinor != 0 {
		t.Errorf("whiteout mode %o rdev %d:%d", wh.Stat.Mode, wh.Stat.RdevMajor, wh.Stat.RdevMinor)
	}
	p.wantErr(MIDMknodAt, &MknodAtReq{DirFD: d.ControlFD, UID: NoUID, GID: NoGID, Mode: unix.S_IFCHR, Major: 1, Minor: 3, Name: []byte("null")}, unix.EPERM)
	p.wantErr(MIDMknodAt, &MknodAtReq{DirFD: d.ControlFD, UID: NoUID, GID: NoGID, Mode: unix.S_IFIFO, Name: []byte("fifo")}, unix.EPERM)

	p.must(MIDSymlinkAt, &SymlinkAtReq{DirFD: d.ControlFD, UID: NoUID, GID: NoGID, Name: []byte("sl"), Target: []byte("../../../etc/passwd")}, &sl)
	var rl ReadLinkAtResp
	p.must(MIDReadLinkAt, &FDReq{FD: sl.ControlFD}, &rl)
	if string(rl.Target) != "../../../etc/passwd" {
		t.Errorf("readlink %q", rl.Target)
	}
	p.wantErr(MIDReadLinkAt, &FDReq{FD: f.ControlFD}, unix.EINVAL)
	p.wantErr(MIDOpenAt, &OpenAtReq{FD: sl.ControlFD}, unix.EINVAL)
	p.wantErr(MIDOpenAt, &OpenAtReq{FD: d.ControlFD, Flags: unix.O_WRONLY}, unix.EISDIR)

	p.must(MIDLinkAt, &LinkAtReq{DirFD: rootFD, Target: f.ControlFD, Name: []byte("hard")}, &ln)
	if ln.Stat.Ino != f.Stat.Ino || ln.Stat.Nlink != 2 {
		t.Errorf("link ino %d nlink %d", ln.Stat.Ino, ln.Stat.Nlink)
	}
	p.wantErr(MIDLinkAt, &LinkAtReq{DirFD: rootFD, Target: d.ControlFD, Name: []byte("dl")}, unix.EPERM)

	// Getdents64: everything but . and .., with device numbers; rewinds.
	dirOpen, _ := p.open(d.ControlFD, unix.O_RDONLY)
	readAll := func(count int32) []string {
		var got []string
		c := -count
		for {
			var r Getdents64Resp
			p.must(MIDGetdents64, &Getdents64Req{DirFD: dirOpen, Count: c}, &r)
			if len(r.Dirents) == 0 {
				break
			}
			for _, e := range r.Dirents {
				if e.DevMajor == 0 && e.DevMinor == 0 && d.Stat.DevMajor+d.Stat.DevMinor != 0 {
					t.Errorf("dirent %q without device numbers", e.Name)
				}
				got = append(got, e.Name)
			}
			c = count
		}
		sort.Strings(got)
		return got
	}
	want := []string{"file", "sl", "wh"}
	if got := readAll(65536); !slices.Equal(got, want) {
		t.Errorf("getdents %v, want %v", got, want)
	}
	if got := readAll(40); !slices.Equal(got, want) { // one entry per call
		t.Errorf("small-budget getdents %v, want %v", got, want)
	}
	p.wantErr(MIDGetdents64, &Getdents64Req{DirFD: d.ControlFD, Count: 100}, unix.EINVAL)

	// Rename, RenameAt2 flags, unlink.
	p.must(MIDRenameAt, &RenameAtReq{OldDir: d.ControlFD, OldName: []byte("file"), NewDir: rootFD, NewName: []byte("moved")}, nil)
	p.wantErr(MIDRenameAt, &RenameAtReq{OldDir: d.ControlFD, OldName: []byte("file"), NewDir: rootFD, NewName: []byte("x")}, unix.ENOENT)
	p.wantErr(MIDRenameAt2, &RenameAt2Req{RenameAtReq: RenameAtReq{OldDir: rootFD, OldName: []byte("moved"), NewDir: rootFD, NewName: []byte("hard")}, Flags: unix.RENAME_NOREPLACE}, unix.EEXIST)
	p.must(MIDRenameAt2, &RenameAt2Req{RenameAtReq: RenameAtReq{OldDir: rootFD, OldName: []byte("moved"), NewDir: rootFD, NewName: []byte("d")}, Flags: unix.RENAME_EXCHANGE}, nil)
	if fi, err := os.Lstat(filepath.Join(root, "moved")); err != nil || !fi.IsDir() {
		t.Errorf("exchange: moved is %v %v", fi, err)
	}
	p.wantErr(MIDRenameAt2, &RenameAt2Req{RenameAtReq: RenameAtReq{OldDir: rootFD, OldName: []byte("d"), NewDir: rootFD, NewName: []byte("e")}, Flags: 1 << 8}, unix.EINVAL)
	p.wantErr(MIDRenameAt, &RenameAtReq{OldDir: f.ControlFD, OldName: []byte("a"), NewDir: rootFD, NewName: []byte("b")}, unix.ENOTDIR)
	p.wantErr(MIDUnlinkAt, &UnlinkAtReq{DirFD: rootFD, Name: []byte("moved"), Flags: unix.AT_REMOVEDIR}, unix.ENOTEMPTY)
	p.wantErr(MIDUnlinkAt, &UnlinkAtReq{DirFD: rootFD, Name: []byte("moved")}, unix.EISDIR)
	p.wantErr(MIDUnlinkAt, &UnlinkAtReq{DirFD: rootFD, Name: []byte("nope")}, unix.ENOENT)
	p.wantErr(MIDUnlinkAt, &UnlinkAtReq{DirFD: rootFD, Name: []byte("d"), Flags: 1}, unix.EINVAL)
	p.must(MIDUnlinkAt, &UnlinkAtReq{DirFD: rootFD, Name: []byte("hard")}, nil)

	// Walk into the (now moved) directory through its old control FDID:
	// the FDID follows the inode, not the path.
	st, inodes := p.walk(d.ControlFD, "sl")
	if st != WalkSuccess || len(inodes) != 1 {
		t.Errorf("walk via moved dir: %d %d", st, len(inodes))
	}

	var sfs StatFS
	p.must(MIDFStatFS, &FDReq{FD: rootFD}, &sfs)
	if sfs.BlockSize <= 0 || sfs.NameLength == 0 {
		t.Errorf("statfs %+v", sfs)
	}
}

func TestWalkSemantics(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "a/b/c.txt"), "c")
	if err := os.Symlink("b", filepath.Join(root, "a/lnk")); err != nil {
		t.Fatal(err)
	}
	p := dial(t, startServer(t, root, false))
	rootFD := p.mount()

	cases := []struct {
		path   []string
		status WalkStatus
		n      int
		err    unix.Errno
	}{
		{path: nil, status: WalkSuccess, n: 0},
		{path: []string{"a", "b", "c.txt"}, status: WalkSuccess, n: 3},
		{path: []string{"a", "missing", "x"}, status: WalkComponentDoesNotExist, n: 1},
		{path: []string{"a", "lnk"}, status: WalkSuccess, n: 2},
		{path: []string{"a", "lnk", "c.txt"}, status: WalkComponentSymlink, n: 2},
		{path: []string{"a", "b", "c.txt", "x"}, err: unix.ENOTDIR},
		{path: []string{"a", ".."}, err: unix.EINVAL},
		{path: []string{"."}, err: unix.EINVAL},
		{path: []string{""}, err: unix.EINVAL},
		{path: []string{"a/b"}, err: unix.EINVAL},
		{path: []string{"a\x00"}, err: unix.EINVAL},
	}
	for _, c := range cases {
		req := WalkReq{DirFD: rootFD, Path: names(c.path...)}
		var r WalkResp
		_, err := p.call(MIDWalk, &req, &r)
		if c.err != 0 {
			if err != c.err {
				t.Errorf("walk %q: err %v, want %v", c.path, err, c.err)
			}
			continue
		}
		if err != nil || r.Status != c.status || len(r.Inodes) != c.n {
			t.Errorf("walk %q: status %d n %d err %v; want %d %d", c.path, r.Status, len(r.Inodes), err, c.status, c.n)
		}
		if c.status == WalkComponentSymlink && fileType(r.Inodes[len(r.Inodes)-1].Stat.Mode) != unix.S_IFLNK {
			t.Errorf("walk %q: last inode is not the link", c.path)
		}
	}
	p.wantErr(MIDWalk, &WalkReq{DirFD: 777, Path: names("a")}, unix.EBADF)
	file := p.walkOne(rootFD, "a")
	_, in := p.walk(file, "b", "c.txt")
	p.wantErr(MIDWalk, &WalkReq{DirFD: in[1].ControlFD, Path: names("x")}, unix.ENOTDIR)
	ofd, _ := p.open(file, unix.O_RDONLY)
	p.wantErr(MIDWalk, &WalkReq{DirFD: ofd, Path: names("b")}, unix.EINVAL)
	p.wantErr(MIDWalk, &WalkReq{DirFD: rootFD, Path: make([][]byte, MaxMessageSize/InodeSize+1)}, unix.EIO)

	// WalkStat: leading "" stats the dir itself; stops after a symlink or
	// at a missing component.
	wcases := []struct {
		dir  FDID
		path []string
		n    int
		err  unix.Errno
	}{
		{rootFD, []string{""}, 1, 0},
		{rootFD, []string{"", "a", "b"}, 3, 0},
		{rootFD, []string{"a", "lnk", "c.txt"}, 2, 0},
		{rootFD, []string{"a", "nope", "c.txt"}, 1, 0},
		{in[1].ControlFD, []string{""}, 1, 0},
		{in[1].ControlFD, []string{"x"}, 0, unix.ENOTDIR},
		{rootFD, []string{"a", ".."}, 0, unix.EINVAL},
		{ofd, []string{""}, 0, unix.EINVAL},
	}
	for _, c := range wcases {
		var r WalkStatResp
		_, err := p.call(MIDWalkStat, &WalkReq{DirFD: c.dir, Path: names(c.path...)}, &r)
		if c.err != 0 {
			if err != c.err {
				t.Errorf("walkstat %q: %v, want %v", c.path, err, c.err)
			}
			continue
		}
		if err != nil || len(r.Stats) != c.n {
			t.Errorf("walkstat %q: %d stats %v, want %d", c.path, len(r.Stats), err, c.n)
		}
	}
}

func TestXattrs(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "f"), "x")
	if err := os.Symlink("/etc/hostname", filepath.Join(root, "sl")); err != nil {
		t.Fatal(err)
	}
	p := dial(t, startServer(t, root, false))
	rootFD := p.mount()
	f := p.walkOne(rootFD, "f")
	sl := p.walkOne(rootFD, "sl")

	for _, fd := range []FDID{f, sl, rootFD} {
		p.must(MIDFSetXattr, &FSetXattrReq{FD: fd, Name: []byte("trusted.overlay.opaque"), Value: []byte("y")}, nil)
		p.wantErr(MIDFSetXattr, &FSetXattrReq{FD: fd, Name: []byte("trusted.overlay.opaque"), Value: []byte("y"), Flags: unix.XATTR_CREATE}, unix.EEXIST)
		var g FGetXattrResp
		p.must(MIDFGetXattr, &FGetXattrReq{FD: fd, Name: []byte("trusted.overlay.opaque")}, &g)
		if string(g.Value) != "y" {
			t.Errorf("getxattr %q", g.Value)
		}
		p.must(MIDFGetXattr, &FGetXattrReq{FD: fd, Name: []byte("trusted.overlay.opaque"), BufSize: 1}, &g)
		var l FListXattrResp
		p.must(MIDFListXattr, &FListXattrReq{FD: fd, Size: 100}, &l)
		found := false
		for _, n := range l.Xattrs {
			found = found || string(n) == "trusted.overlay.opaque"
		}
		if !found {
			t.Errorf("listxattr %q lacks the attribute", l.Xattrs)
		}
		p.must(MIDFRemoveXattr, &FRemoveXattrReq{FD: fd, Name: []byte("trusted.overlay.opaque")}, nil)
		p.wantErr(MIDFGetXattr, &FGetXattrReq{FD: fd, Name: []byte("trusted.overlay.opaque")}, unix.ENODATA)
		p.wantErr(MIDFRemoveXattr, &FRemoveXattrReq{FD: fd, Name: []byte("trusted.overlay.opaque")}, unix.ENODATA)
	}
	// The xattr on the link went to the link, never to its target.
	buf := make([]byte, 64)
	if _, err := unix.Getxattr("/etc/hostname", "trusted.overlay.opaque", buf); err != unix.ENODATA && err != unix.ENOENT {
		t.Errorf("target outside the root has the attribute: %v", err)
	}
	p.wantErr(MIDFGetXattr, &FGetXattrReq{FD: f, Name: nil}, unix.EINVAL)
	p.wantErr(MIDFSetXattr, &FSetXattrReq{FD: f, Name: []byte("user.x"), Flags: 8}, unix.EINVAL)
}

func TestSocketMessagesRefused(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "f"), "x")
	p := dial(t, startServer(t, root, false))
	rootFD := p.mount()
	f := p.walkOne(rootFD, "f")
	p.wantErr(MIDConnect, &ConnectReq{FD: f, SockType: unix.SOCK_STREAM}, unix.ENOTSOCK)
	p.wantErr(MIDConnect, &ConnectReq{FD: 99}, unix.EBADF)
	p.wantErr(MIDConnectWithCreds, &ConnectWithCredsReq{FD: f}, unix.ENOTSOCK)
	p.wantErr(MIDBindAt, &BindAtReq{DirFD: rootFD, UID: NoUID, GID: NoGID, SockType: unix.SOCK_STREAM, Name: []byte("s")}, unix.EPERM)
	p.wantErr(MIDListen, &ListenReq{FD: f}, unix.EINVAL)
	p.wantErr(MIDListen, &ListenReq{FD: 99}, unix.EBADF)
	p.wantErr(MIDAccept, &FDReq{FD: f}, unix.EINVAL)
	if _, err := os.Lstat(filepath.Join(root, "s")); err == nil {
		t.Error("BindAt created a socket file")
	}
}

func TestReadOnlyRefusesEveryChange(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "f"), "data")
	p := dial(t, startServer(t, root, true))
	rootFD := p.mount()
	f := p.walkOne(rootFD, "f")
	for m := MIDMount; m <= MIDMax; m++ {
		if !isMutating(m) {
			continue
		}
		// EROFS comes before decoding, so even an empty payload gets it.
		rmid, out, _ := p.roundTrip(m, nil, 0)
		var e ErrorResp
		if rmid != MIDError || e.Decode(out) != nil || unix.Errno(e.Errno) != unix.EROFS {
			t.Errorf("read-only %v: got MID %v %x", m, rmid, out)
		}
	}
	want := []MID{MIDSetStat, MIDOpenCreateAt, MIDPWrite, MIDMkdirAt, MIDMknodAt, MIDSymlinkAt,
		MIDLinkAt, MIDFAllocate, MIDUnlinkAt, MIDRenameAt, MIDRenameAt2, MIDFSetXattr, MIDFRemoveXattr, MIDBindAt}
	for _, m := range want {
		if !isMutating(m) {
			t.Errorf("%v not refused on read-only servers", m)
		}
	}
	p.wantErr(MIDOpenAt, &OpenAtReq{FD: f, Flags: unix.O_WRONLY}, unix.EROFS)
	p.wantErr(MIDOpenAt, &OpenAtReq{FD: f, Flags: unix.O_RDWR}, unix.EROFS)
	p.wantErr(MIDOpenAt, &OpenAtReq{FD: f, Flags: unix.O_RDONLY | unix.O_TRUNC}, unix.EROFS)
	ofd, _ := p.open(f, unix.O_RDONLY)
	var rr PReadResp
	p.must(MIDPRead, &PReadReq{FD: ofd, Count: 10}, &rr)
	if string(rr.Buf) != "data" {
		t.Errorf("read-only read %q", rr.Buf)
	}
	p.must(MIDFSync, &FdArray{FDs: []FDID{ofd}}, nil)
	if b, _ := os.ReadFile(filepath.Join(root, "f")); !bytes.Equal(b, []byte("data")) {
		t.Errorf("file changed: %q", b)
	}
}

func TestBadFramesDropOnlyThatConnection(t *testing.T) {
	srv := startServer(t, "", false)
	good := dial(t, srv)
	good.mount()

	cases := map[string][]byte{
		// payloadLen beyond the maximum: EIO then the connection is dropped.
		"oversized": {0xff, 0xff, 0xff, 0x7f, 5, 0, 0, 0},
		// Truncated: header promises 24 bytes, 3 arrive, then EOF.
		"truncated": {24, 0, 0, 0, 12, 0, 0, 0, 1, 2, 3},
	}
	for name, frame := range cases {
		t.Run(name, func(t *testing.T) {
			a, b := socketpair(t)
			done := make(chan error, 1)
			go func() { done <- srv.ServeConn(a) }()
			if _, err := unix.Write(b, frame); err != nil {
				t.Fatal(err)
			}
			if name == "truncated" {
				_ = unix.Shutdown(b, unix.SHUT_WR)
			}
			c := NewConn(b)
			defer c.Close()
			if name == "oversized" {
				mid, payload, _, err := c.Recv(MaxMessageSize, 0)
				var e ErrorResp
				if err != nil || mid != MIDError || e.Decode(payload) != nil || unix.Errno(e.Errno) != unix.EIO {
					t.Errorf("oversized: got %v %x %v, want EIO", mid, payload, err)
				}
			}
			if err := <-done; err == nil {
				t.Errorf("ServeConn returned nil for a bad stream")
			}
			// The peer sees EOF: the connection was dropped.
			if _, _, _, err := c.Recv(MaxMessageSize, 0); err == nil {
				t.Errorf("connection still open")
			}
		})
	}
	// Undecodable payloads only fail the request.
	good.wantErr(MIDWalk, &FDReq{FD: 1}, unix.EIO)
	rmid, out, _ := good.roundTrip(MIDFStat, []byte{1, 2, 3}, 0)
	if rmid != MIDError || !bytes.Equal(out, errorPayload(unix.EIO)) {
		t.Errorf("short FStat: %v %x", rmid, out)
	}
	good.must(MIDFStat, &FDReq{FD: 1}, &Statx{})
}

func TestErrnoTable(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "f"), "x")
	if err := os.Mkdir(filepath.Join(root, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := dial(t, startServer(t, root, false))
	rootFD := p.mount()
	f := p.walkOne(rootFD, "f")
	open, _ := p.open(f, unix.O_RDONLY)
	cases := []struct {
		name string
		mid  MID
		req  Message
		want unix.Errno
	}{
		{"fstat unknown", MIDFStat, &FDReq{FD: 1000}, unix.EBADF},
		{"fstat zero", MIDFStat, &FDReq{FD: 0}, unix.EBADF},
		{"statfs open fd", MIDFStatFS, &FDReq{FD: open}, unix.EINVAL},
		{"openat open fd", MIDOpenAt, &OpenAtReq{FD: open}, unix.EINVAL},
		{"pread control", MIDPRead, &PReadReq{FD: f, Count: 1}, unix.EINVAL},
		{"pread too big", MIDPRead, &PReadReq{FD: open, Count: MaxMessageSize}, unix.ENOBUFS},
		{"mkdir in file", MIDMkdirAt, &MkdirAtReq{DirFD: f, Name: []byte("x")}, unix.ENOTDIR},
		{"mkdir dotdot", MIDMkdirAt, &MkdirAtReq{DirFD: rootFD, Name: []byte("..")}, unix.EINVAL},
		{"create slash", MIDOpenCreateAt, &OpenCreateAtReq{DirFD: rootFD, Name: []byte("a/b")}, unix.EINVAL},
		{"symlink empty name", MIDSymlinkAt, &SymlinkAtReq{DirFD: rootFD, Name: nil, Target: []byte("x")}, unix.EINVAL},
		{"unlink dot", MIDUnlinkAt, &UnlinkAtReq{DirFD: rootFD, Name: []byte(".")}, unix.EINVAL},
		{"rmdir file", MIDUnlinkAt, &UnlinkAtReq{DirFD: rootFD, Name: []byte("f"), Flags: unix.AT_REMOVEDIR}, unix.ENOTDIR},
		{"rename dotdot", MIDRenameAt, &RenameAtReq{OldDir: rootFD, OldName: []byte("f"), NewDir: rootFD, NewName: []byte("..")}, unix.EINVAL},
		{"link slash", MIDLinkAt, &LinkAtReq{DirFD: rootFD, Target: f, Name: []byte("/etc/x")}, unix.EINVAL},
		{"getdents file", MIDGetdents64, &Getdents64Req{DirFD: open, Count: 100}, unix.ENOTDIR},
		{"read missing xattr", MIDFGetXattr, &FGetXattrReq{FD: f, Name: []byte("user.none")}, unix.ENODATA},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			outer := p.t
			p.t = t
			defer func() { p.t = outer }()
			p.wantErr(c.mid, c.req, c.want)
		})
	}
}
