package lisafs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"golang.org/x/sys/unix"
)

// direntNames returns the sorted names of ds and checks each entry's Statx
// against an lstat of dir/name.
func direntNames(t *testing.T, dir string, ds []DirentStat) []string {
	t.Helper()
	var out []string
	for _, d := range ds {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, d.Name), &st); err != nil {
			t.Fatalf("lstat %s: %v", d.Name, err)
		}
		if d.Stat.Ino != st.Ino || uint32(d.Stat.Mode) != st.Mode || d.Stat.Size != uint64(st.Size) || d.Ino != st.Ino {
			t.Errorf("%s: statx ino %d mode %o size %d, lstat ino %d mode %o size %d",
				d.Name, d.Stat.Ino, d.Stat.Mode, d.Stat.Size, st.Ino, st.Mode, st.Size)
		}
		out = append(out, d.Name)
	}
	sort.Strings(out)
	return out
}

// TestWalkOpenDirListsSmallDirectoryInOneReply pins the extension's point:
// one request reaches a child directory (a control FDID the client can walk
// from), and brings its whole listing with attributes and the end mark, so
// that no open FDID is left to close. An empty name lists the directory
// itself without a new control FDID.
func TestWalkOpenDirListsSmallDirectoryInOneReply(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"d/a", "d/bb", "d/sub/deep"} {
		writeFile(t, filepath.Join(root, f), f)
	}
	if err := os.Symlink("../elsewhere", filepath.Join(root, "d/ln")); err != nil {
		t.Fatal(err)
	}
	p := dial(t, startServer(t, root, true))
	rootFD := p.mount()
	want := []string{"a", "bb", "ln", "sub"}

	var r WalkOpenDirResp
	p.must(MIDWalkOpenDir, &WalkOpenDirReq{DirFD: rootFD, Count: 65536, Name: []byte("d")}, &r)
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(root, "d"), &st); err != nil {
		t.Fatal(err)
	}
	if r.Child.ControlFD == 0 || r.Child.Stat.Ino != st.Ino || fileType(r.Child.Stat.Mode) != unix.S_IFDIR {
		t.Errorf("child %+v, want a control FDID on ino %d", r.Child, st.Ino)
	}
	if !r.End() || r.OpenFD != 0 {
		t.Errorf("small directory: end %v open FDID %d, want the end and none", r.End(), r.OpenFD)
	}
	if got := direntNames(t, filepath.Join(root, "d"), r.Dirents); !slices.Equal(got, want) {
		t.Errorf("listed %v, want %v", got, want)
	}
	// The control FDID walks further.
	if st, in := p.walk(r.Child.ControlFD, "sub", "deep"); st != WalkSuccess || len(in) != 2 {
		t.Errorf("walk from the new control FDID: status %d, %d inodes", st, len(in))
	}

	// "" lists the directory of the FDID itself and creates no FDID.
	var self WalkOpenDirResp
	p.must(MIDWalkOpenDir, &WalkOpenDirReq{DirFD: r.Child.ControlFD, Count: 65536}, &self)
	if self.Child.ControlFD != 0 || self.Child.Stat.Ino != st.Ino || !self.End() {
		t.Errorf("listing the FDID itself: %+v end %v", self.Child, self.End())
	}
	if got := direntNames(t, filepath.Join(root, "d"), self.Dirents); !slices.Equal(got, want) {
		t.Errorf("listed itself %v, want %v", got, want)
	}
	// An empty directory: one reply, no entries, the end.
	var empty WalkOpenDirResp
	if err := os.Mkdir(filepath.Join(root, "e"), 0o755); err != nil {
		t.Fatal(err)
	}
	p.must(MIDWalkOpenDir, &WalkOpenDirReq{DirFD: rootFD, Count: 65536, Name: []byte("e")}, &empty)
	if !empty.End() || len(empty.Dirents) != 0 {
		t.Errorf("empty directory: end %v, %d entries", empty.End(), len(empty.Dirents))
	}
}

// TestWalkOpenDirContinuesWithGetdents64Stat checks that a directory larger
// than the first batch leaves an open FDID positioned after it, from which
// Getdents64Stat brings every remaining name exactly once.
func TestWalkOpenDirContinuesWithGetdents64Stat(t *testing.T) {
	root := t.TempDir()
	var want []string
	for i := range 300 {
		name := fmt.Sprintf("file-%03d", i)
		want = append(want, name)
		writeFile(t, filepath.Join(root, "big", name), "")
	}
	p := dial(t, startServer(t, root, true))
	rootFD := p.mount()
	var r WalkOpenDirResp
	p.must(MIDWalkOpenDir, &WalkOpenDirReq{DirFD: rootFD, Count: 1024, Name: []byte("big")}, &r)
	if r.End() || r.OpenFD == 0 || len(r.Dirents) == 0 || len(r.Dirents) >= 300 {
		t.Fatalf("first batch of 300 with a 1 KiB budget: end %v open FDID %d, %d entries", r.End(), r.OpenFD, len(r.Dirents))
	}
	all := append([]DirentStat(nil), r.Dirents...)
	for range 1000 {
		var g Getdents64StatResp
		p.must(MIDGetdents64Stat, &Getdents64Req{DirFD: r.OpenFD, Count: 4096}, &g)
		if len(g.Dirents) == 0 {
			break
		}
		all = append(all, g.Dirents...)
	}
	if got := direntNames(t, filepath.Join(root, "big"), all); !slices.Equal(got, want) {
		t.Errorf("listed %d names, want the 300 once each", len(got))
	}
	p.must(MIDClose, &FdArray{FDs: []FDID{r.OpenFD, r.Child.ControlFD}}, nil)
}

// TestWalkOpenDirRefusesWhatWalkRefuses checks the confinement: the name is
// one component, a symlink is never followed (even to a directory), a host
// block device is EPERM as in Walk, anything else but a directory is
// ENOTDIR, and the FDID must be a directory's control FDID.
func TestWalkOpenDirRefusesWhatWalkRefuses(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "file"), "x")
	if err := os.Mkdir(filepath.Join(root, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("dir", filepath.Join(root, "ln")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(root, "abs")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	blk := unix.Mknod(filepath.Join(root, "blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))) == nil
	p := dial(t, startServer(t, root, true))
	rootFD := p.mount()
	fileFD := p.walkOne(rootFD, "file")
	dirFD := p.walkOne(rootFD, "dir")
	openFD, _ := p.open(dirFD, unix.O_RDONLY)
	cases := []struct {
		dir  FDID
		name string
		want unix.Errno
	}{
		{rootFD, "missing", unix.ENOENT},
		{rootFD, "file", unix.ENOTDIR},
		{rootFD, "ln", unix.ENOTDIR},
		{rootFD, "abs", unix.ENOTDIR},
		{rootFD, "fifo", unix.ENOTDIR},
		{rootFD, "..", unix.EINVAL},
		{rootFD, ".", unix.EINVAL},
		{rootFD, "dir/", unix.EINVAL},
		{rootFD, "dir/../..", unix.EINVAL},
		{fileFD, "", unix.ENOTDIR},
		{fileFD, "x", unix.ENOTDIR},
		{openFD, "", unix.EINVAL},
		{777, "dir", unix.EBADF},
	}
	if blk {
		cases = append(cases, struct {
			dir  FDID
			name string
			want unix.Errno
		}{rootFD, "blk", unix.EPERM})
	}
	for _, c := range cases {
		p.wantErr(MIDWalkOpenDir, &WalkOpenDirReq{DirFD: c.dir, Count: 4096, Name: []byte(c.name)}, c.want)
	}
	// A Walk agrees on the block device.
	if blk {
		p.wantErr(MIDWalk, &WalkReq{DirFD: rootFD, Path: names("blk")}, unix.EPERM)
	}
}

// TestWalkOpenDirCrossesSubmountsAsWalkDoes checks that, like Walk, the
// extension enters a file system mounted beneath the served root.
func TestWalkOpenDirCrossesSubmountsAsWalkDoes(t *testing.T) {
	root := t.TempDir()
	mnt := filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	writeFile(t, filepath.Join(mnt, "inside"), "x")
	p := dial(t, startServer(t, root, true))
	rootFD := p.mount()
	var r WalkOpenDirResp
	p.must(MIDWalkOpenDir, &WalkOpenDirReq{DirFD: rootFD, Count: 4096, Name: []byte("mnt")}, &r)
	var walked WalkResp
	p.must(MIDWalk, &WalkReq{DirFD: rootFD, Path: names("mnt")}, &walked)
	if len(walked.Inodes) != 1 || walked.Inodes[0].Stat.Ino != r.Child.Stat.Ino || walked.Inodes[0].Stat.DevMinor != r.Child.Stat.DevMinor {
		t.Errorf("WalkOpenDir reached %+v, Walk %+v", r.Child.Stat, walked.Inodes)
	}
	if len(r.Dirents) != 1 || r.Dirents[0].Name != "inside" {
		t.Errorf("listed %+v, want the tmpfs's one file", r.Dirents)
	}
}

// TestClientWalkOpenDir checks the client's method against our server (the
// listing, and the FDIDs it owns), and against a server without the
// extension: EOPNOTSUPP, remembered, so later calls cost no round trip.
func TestClientWalkOpenDir(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "d/f"), "x")
	c, rootIn, _ := chanClient(t, Config{Root: root, ReadOnly: true}, ClientOptions{})
	r, err := c.WalkOpenDir(rootIn.ControlFD, "d", 65536)
	if err != nil || r.Child.ControlFD == 0 || !r.End() || len(r.Dirents) != 1 || r.Dirents[0].Name != "f" || r.Dirents[0].Stat.Size != 1 {
		t.Fatalf("WalkOpenDir d: %+v, %v", r, err)
	}
	if _, err := c.WalkOpenDir(rootIn.ControlFD, "d/f", 65536); err != unix.EINVAL {
		t.Errorf("a path of two components: %v, want EINVAL", err)
	}
	if err := c.CloseFDs(r.Child.ControlFD); err != nil {
		t.Fatal(err)
	}

	old, oldRoot, _ := chanClient(t, Config{Root: root, ReadOnly: true, NoExtensions: true}, ClientOptions{})
	if _, err := old.WalkOpenDir(oldRoot.ControlFD, "d", 65536); err != unix.EOPNOTSUPP {
		t.Fatalf("server without the extension: %v, want EOPNOTSUPP", err)
	}
	before := old.RoundTrips()
	if _, err := old.WalkOpenDir(oldRoot.ControlFD, "d", 65536); err != unix.EOPNOTSUPP {
		t.Errorf("second call: %v, want EOPNOTSUPP", err)
	}
	if _, err := old.Getdents64Stat(1, 100); err != unix.EOPNOTSUPP {
		t.Errorf("Getdents64Stat on a server without extensions: %v", err)
	}
	if n := old.RoundTrips() - before; n != 1 {
		t.Errorf("the refusal was not remembered: %d round trips after it, want 1 (Getdents64Stat's own)", n)
	}
}

// TestClientWalkOpenDirRefusesUnaccountableReplies checks that a reply
// whose FDIDs contradict the request or the end mark (a control FDID for
// an empty name, none for a name, an open FDID with the end mark or none
// without it, unknown flags) fails with EIO, and a truncated one too.
func TestClientWalkOpenDirRefusesUnaccountableReplies(t *testing.T) {
	cases := []struct {
		name string
		walk string
		resp WalkOpenDirResp
	}{
		{"control FDID for an empty name", "", WalkOpenDirResp{Child: wireSampleInode(5), Flags: WalkOpenDirEnd}},
		{"no control FDID for a name", "d", WalkOpenDirResp{Child: Inode{}, Flags: WalkOpenDirEnd}},
		{"open FDID with the end mark", "d", WalkOpenDirResp{Child: wireSampleInode(5), OpenFD: 6, Flags: WalkOpenDirEnd}},
		{"no open FDID without the end mark", "d", WalkOpenDirResp{Child: wireSampleInode(5)}},
		{"unknown flags", "d", WalkOpenDirResp{Child: wireSampleInode(5), Flags: WalkOpenDirEnd | 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, _, _ := ctStart(t, ctMount(MaxMessageSize), nil, func(mid MID, _ []byte) ctReply {
				return ctReply{mid: mid, payload: c.resp.Append(nil)}
			})
			if _, err := cl.WalkOpenDir(1, c.walk, 4096); err != unix.EIO {
				t.Errorf("WalkOpenDir: %v, want EIO", err)
			}
		})
	}
	cl, _, _ := ctStart(t, ctMount(MaxMessageSize), nil, func(mid MID, _ []byte) ctReply {
		good := WalkOpenDirResp{Child: wireSampleInode(5), Flags: WalkOpenDirEnd}
		return ctReply{mid: mid, payload: good.Append(nil)[:100]}
	})
	if _, err := cl.WalkOpenDir(1, "d", 4096); err != unix.EIO {
		t.Errorf("truncated reply: %v, want EIO", err)
	}
}
