package lisafs

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// sentinelTree makes outside/secret (a file that must never be read,
// listed or changed) and outside/root (the served root), and returns both.
func sentinelTree(t *testing.T) (root, secretDir string) {
	t.Helper()
	base := t.TempDir()
	secretDir = filepath.Join(base, "outside")
	writeFile(t, filepath.Join(secretDir, "secret"), "SECRET")
	root = filepath.Join(base, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root, secretDir
}

// checkSentinel fails if anything in secretDir changed.
func checkSentinel(t *testing.T, secretDir string) {
	t.Helper()
	ents, err := os.ReadDir(secretDir)
	if err != nil || len(ents) != 1 || ents[0].Name() != "secret" {
		t.Fatalf("outside directory changed: %v %v", ents, err)
	}
	b, err := os.ReadFile(filepath.Join(secretDir, "secret"))
	if err != nil || string(b) != "SECRET" {
		t.Fatalf("sentinel changed: %q %v", b, err)
	}
	fi, _ := os.Stat(filepath.Join(secretDir, "secret"))
	if fi.Mode().Perm() != 0o644 {
		t.Fatalf("sentinel mode changed: %v", fi.Mode())
	}
	buf := make([]byte, 64)
	if n, _ := unix.Listxattr(filepath.Join(secretDir, "secret"), buf); n > 0 {
		t.Fatalf("sentinel got xattrs %q", buf[:n])
	}
}

func TestCheckName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"a", true}, {"...", true}, {".a", true}, {"a b", true}, {"\xff", true},
		{"", false}, {".", false}, {"..", false}, {"a/b", false}, {"/", false},
		{"/etc", false}, {"../x", false}, {"a\x00", false},
	} {
		if err := checkName([]byte(c.name)); (err == nil) != c.ok {
			t.Errorf("checkName(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestConfinementAttacks(t *testing.T) {
	root, secretDir := sentinelTree(t)
	// Links planted inside the root pointing outside it.
	for name, target := range map[string]string{
		"abs":  filepath.Join(secretDir, "secret"),
		"rel":  "../outside/secret",
		"up":   "..",
		"toor": "/",
		"odir": secretDir,
	} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	p := dial(t, startServer(t, root, false))
	rootFD := p.mount()

	// Names that would leave the directory are refused.
	for _, bad := range []string{"..", "../outside", "/etc", "a/../..", ".", ""} {
		p.wantErr(MIDWalk, &WalkReq{DirFD: rootFD, Path: names(bad)}, unix.EINVAL)
		p.wantErr(MIDMkdirAt, &MkdirAtReq{DirFD: rootFD, UID: NoUID, GID: NoGID, Mode: 0o755, Name: []byte(bad)}, unix.EINVAL)
		p.wantErr(MIDOpenCreateAt, &OpenCreateAtReq{DirFD: rootFD, UID: NoUID, GID: NoGID, Mode: 0o644, Name: []byte(bad)}, unix.EINVAL)
		p.wantErr(MIDUnlinkAt, &UnlinkAtReq{DirFD: rootFD, Name: []byte(bad)}, unix.EINVAL)
		p.wantErr(MIDRenameAt, &RenameAtReq{OldDir: rootFD, OldName: []byte("abs"), NewDir: rootFD, NewName: []byte(bad)}, unix.EINVAL)
	}

	// Walking through any of the links stops at the link (status 2).
	for _, l := range []string{"abs", "rel", "up", "toor", "odir"} {
		st, inodes := p.walk(rootFD, l, "secret")
		if st != WalkComponentSymlink || len(inodes) != 1 || fileType(inodes[0].Stat.Mode) != unix.S_IFLNK {
			t.Fatalf("walk %s/secret: status %d inodes %d", l, st, len(inodes))
		}
		link := inodes[0].ControlFD
		// Every operation on the link FDID acts on the link itself.
		p.wantErr(MIDOpenAt, &OpenAtReq{FD: link}, unix.EINVAL)
		p.wantErr(MIDWalk, &WalkReq{DirFD: link, Path: names("secret")}, unix.ENOTDIR)
		p.wantErr(MIDMkdirAt, &MkdirAtReq{DirFD: link, Name: []byte("x")}, unix.ENOTDIR)
		p.wantErr(MIDOpenCreateAt, &OpenCreateAtReq{DirFD: link, Name: []byte("x")}, unix.ENOTDIR)
		var sr SetStatResp
		p.must(MIDSetStat, &SetStatReq{FD: link, Mask: unix.STATX_MODE | unix.STATX_SIZE, Mode: 0o777}, &sr)
		if sr.FailureMask != unix.STATX_MODE|unix.STATX_SIZE {
			t.Errorf("SetStat on link %s: failure mask %#x", l, sr.FailureMask)
		}
		p.must(MIDSetStat, &SetStatReq{FD: link, Mask: unix.STATX_MTIME, Mtime: Timespec{Sec: 7}}, &sr)
		p.must(MIDFSetXattr, &FSetXattrReq{FD: link, Name: []byte("trusted.x"), Value: []byte("v")}, nil)
		var ws WalkStatResp
		p.must(MIDWalkStat, &WalkReq{DirFD: link, Path: names("", "secret")}, &ws)
		if len(ws.Stats) != 1 {
			t.Errorf("WalkStat through link %s returned %d stats", l, len(ws.Stats))
		}
		// Hard-linking the link links the link, not its target.
		var in Inode
		p.must(MIDLinkAt, &LinkAtReq{DirFD: rootFD, Target: link, Name: []byte("hl-" + l)}, &in)
		if fileType(in.Stat.Mode) != unix.S_IFLNK {
			t.Errorf("LinkAt of link %s made mode %o", l, in.Stat.Mode)
		}
	}
	// WalkStat stops after the link too.
	var ws WalkStatResp
	p.must(MIDWalkStat, &WalkReq{DirFD: rootFD, Path: names("odir", "secret")}, &ws)
	if len(ws.Stats) != 1 || fileType(ws.Stats[0].Mode) != unix.S_IFLNK {
		t.Errorf("WalkStat odir/secret: %d stats", len(ws.Stats))
	}
	// Renaming a link onto a name and unlinking it never touches the target.
	p.must(MIDRenameAt, &RenameAtReq{OldDir: rootFD, OldName: []byte("abs"), NewDir: rootFD, NewName: []byte("abs2")}, nil)
	p.must(MIDUnlinkAt, &UnlinkAtReq{DirFD: rootFD, Name: []byte("abs2")}, nil)
	checkSentinel(t, secretDir)
}

// TestSwapDirForSymlinkRace swaps a directory for a symlink to the outside
// in a loop while walks, stats, creates and reads go through it; nothing
// outside the root may be read, listed or changed.
func TestSwapDirForSymlinkRace(t *testing.T) {
	root, secretDir := sentinelTree(t)
	dir := filepath.Join(root, "d")
	writeFile(t, filepath.Join(dir, "secret"), "inside")
	srv := startServer(t, root, false)
	p := dial(t, srv)
	rootFD := p.mount()

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		alt := filepath.Join(root, "d.real")
		link := filepath.Join(root, "d.link")
		_ = os.Symlink(secretDir, link)
		for !stop.Load() {
			_ = os.Rename(dir, alt)
			_ = os.Rename(link, dir)
			_ = os.Rename(dir, link)
			_ = os.Rename(alt, dir)
		}
	}()
	var secretIno uint64
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(secretDir, "secret"), &st); err != nil {
		t.Fatal(err)
	}
	secretIno = st.Ino
	for i := 0; i < 300; i++ {
		req := WalkReq{DirFD: rootFD, Path: names("d", "secret")}
		var r WalkResp
		if _, err := p.call(MIDWalk, &req, &r); err != nil {
			continue
		}
		var ids []FDID
		for _, in := range r.Inodes {
			ids = append(ids, in.ControlFD)
			if in.Stat.Ino == secretIno {
				t.Fatalf("walk reached the outside sentinel")
			}
		}
		if r.Status == WalkSuccess && len(r.Inodes) == 2 {
			f := r.Inodes[1].ControlFD
			if ofd, err := p.call(MIDOpenAt, &OpenAtReq{FD: f}, &OpenAtResp{}); err == nil {
				for _, fd := range ofd {
					buf := make([]byte, 16)
					n, _ := unix.Pread(fd, buf, 0)
					if bytes.Contains(buf[:n], []byte("SECRET")) {
						t.Fatalf("read the sentinel")
					}
				}
			}
		}
		if len(r.Inodes) > 0 {
			d := r.Inodes[0].ControlFD
			_, _ = p.call(MIDMkdirAt, &MkdirAtReq{DirFD: d, UID: NoUID, GID: NoGID, Mode: 0o755, Name: []byte("new")}, &Inode{})
			_, _ = p.call(MIDUnlinkAt, &UnlinkAtReq{DirFD: d, Name: []byte("new"), Flags: unix.AT_REMOVEDIR}, nil)
			_, _ = p.call(MIDFSetXattr, &FSetXattrReq{FD: d, Name: []byte("trusted.y"), Value: []byte("v")}, nil)
			var ws WalkStatResp
			if _, err := p.call(MIDWalkStat, &WalkReq{DirFD: rootFD, Path: names("d", "secret")}, &ws); err == nil {
				for _, s := range ws.Stats {
					if s.Ino == secretIno {
						t.Fatalf("WalkStat reached the sentinel")
					}
				}
			}
		}
		p.must(MIDClose, &FdArray{FDs: ids}, nil)
	}
	stop.Store(true)
	wg.Wait()
	checkSentinel(t, secretDir)
}
