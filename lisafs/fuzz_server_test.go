package lisafs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// fuzzFixture builds outside/secret + root with a directory, a file and
// links pointing outside, and a socketless connection whose FDIDs are:
// 1 root, 2 "d", 3 "d/f", 4 open O_RDWR on "d/f", 5 open on "d",
// 6 the link "out" (→ outside dir), 7 the link "abs" (→ secret).
func fuzzFixture(t *testing.T) (*connection, string) {
	base := t.TempDir()
	secretDir := filepath.Join(base, "outside")
	writeFile(t, filepath.Join(secretDir, "secret"), "SECRET")
	root := filepath.Join(base, "root")
	writeFile(t, filepath.Join(root, "d", "f"), "content")
	if err := os.Symlink(secretDir, filepath.Join(root, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(secretDir, "secret"), filepath.Join(root, "abs")); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	cc := &connection{srv: srv, fds: make(map[FDID]*fdEntry)}
	t.Cleanup(cc.close)
	steps := []struct {
		mid MID
		req Message
	}{
		{MIDMount, &EmptyMessage{}},
		{MIDWalk, &WalkReq{DirFD: 1, Path: names("d", "f")}},
		{MIDOpenAt, &OpenAtReq{FD: 3, Flags: unix.O_RDWR}},
		{MIDOpenAt, &OpenAtReq{FD: 2}},
		{MIDWalk, &WalkReq{DirFD: 1, Path: names("out")}},
		{MIDWalk, &WalkReq{DirFD: 1, Path: names("abs")}},
	}
	for _, s := range steps {
		rmid, _, donate := cc.handle(s.mid, s.req.Append(nil))
		for _, fd := range donate {
			closeFD(fd)
		}
		if rmid != s.mid {
			t.Fatalf("fixture %v failed", s.mid)
		}
	}
	return cc, secretDir
}

// FuzzServe feeds one arbitrary request to a connection's dispatch and
// checks that no handler panics (a recovered panic would be EREMOTEIO), the
// response fits the limit, and nothing outside the root changed.
func FuzzServe(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(uint16(s.mid), s.req.Append(nil))
	}
	f.Fuzz(func(t *testing.T, mid uint16, payload []byte) {
		cc, secretDir := fuzzFixture(t)
		rmid, resp, donate := cc.handle(MID(mid), payload)
		for _, fd := range donate {
			closeFD(fd)
		}
		if rmid == MIDError {
			var e ErrorResp
			if err := e.Decode(resp); err != nil {
				t.Fatalf("bad error payload %x", resp)
			}
			if unix.Errno(e.Errno) == unix.EREMOTEIO {
				t.Fatalf("handler for MID %d panicked on %x", mid, payload)
			}
		} else if rmid != MID(mid) {
			t.Fatalf("MID %d answered with %v", mid, rmid)
		}
		if len(resp) > MaxMessageSize {
			t.Fatalf("response of %d bytes", len(resp))
		}
		checkSentinel(t, secretDir)
	})
}

// fuzzSeeds is one valid request per supported message against the
// fixture's FDIDs, plus a few hostile ones.
func fuzzSeeds() []struct {
	mid MID
	req Message
} {
	return []struct {
		mid MID
		req Message
	}{
		{MIDMount, &EmptyMessage{}},
		{MIDFStat, &FDReq{FD: 3}},
		{MIDSetStat, &SetStatReq{FD: 3, Mask: unix.STATX_MODE | unix.STATX_SIZE, Mode: 0o600, Size: 3}},
		{MIDSetStat, &SetStatReq{FD: 6, Mask: unix.STATX_MODE | unix.STATX_UID, Mode: 0o777, UID: 0}},
		{MIDWalk, &WalkReq{DirFD: 1, Path: names("d", "f")}},
		{MIDWalk, &WalkReq{DirFD: 1, Path: names("out", "secret")}},
		{MIDWalk, &WalkReq{DirFD: 1, Path: names("..", "outside")}},
		{MIDWalkStat, &WalkReq{DirFD: 1, Path: names("", "d", "f")}},
		{MIDOpenAt, &OpenAtReq{FD: 7, Flags: unix.O_RDWR}},
		{MIDOpenCreateAt, &OpenCreateAtReq{DirFD: 2, UID: NoUID, GID: NoGID, Mode: 0o644, Flags: unix.O_RDWR, Name: []byte("n")}},
		{MIDClose, &FdArray{FDs: []FDID{1, 2, 3, 4, 5, 6, 7}}},
		{MIDFSync, &FdArray{FDs: []FDID{4, 5}}},
		{MIDPWrite, &PWriteReq{FD: 4, Offset: 2, Buf: []byte("xyz")}},
		{MIDPRead, &PReadReq{FD: 4, Count: 100}},
		{MIDMkdirAt, &MkdirAtReq{DirFD: 1, UID: NoUID, GID: NoGID, Mode: 0o755, Name: []byte("m")}},
		{MIDMknodAt, &MknodAtReq{DirFD: 1, UID: NoUID, GID: NoGID, Mode: unix.S_IFCHR, Name: []byte("wh")}},
		{MIDSymlinkAt, &SymlinkAtReq{DirFD: 1, UID: NoUID, GID: NoGID, Name: []byte("l"), Target: []byte("/")}},
		{MIDLinkAt, &LinkAtReq{DirFD: 1, Target: 7, Name: []byte("hl")}},
		{MIDFStatFS, &FDReq{FD: 1}},
		{MIDFAllocate, &FAllocateReq{FD: 4, Length: 10}},
		{MIDReadLinkAt, &FDReq{FD: 6}},
		{MIDConnect, &ConnectReq{FD: 3, SockType: 1}},
		{MIDUnlinkAt, &UnlinkAtReq{DirFD: 1, Name: []byte("out")}},
		{MIDRenameAt, &RenameAtReq{OldDir: 1, OldName: []byte("abs"), NewDir: 2, NewName: []byte("x")}},
		{MIDRenameAt2, &RenameAt2Req{RenameAtReq: RenameAtReq{OldDir: 1, OldName: []byte("d"), NewDir: 1, NewName: []byte("out")}, Flags: unix.RENAME_EXCHANGE}},
		{MIDGetdents64, &Getdents64Req{DirFD: 5, Count: -100}},
		{MIDGetdents64Stat, &Getdents64Req{DirFD: 5, Count: 100}},
		{MIDWalkOpenDir, &WalkOpenDirReq{DirFD: 1, Count: 100, Name: []byte("d")}},
		{MIDWalkOpenDir, &WalkOpenDirReq{DirFD: 1, Count: -1, Name: []byte("out")}},
		{MIDFGetXattr, &FGetXattrReq{FD: 7, Name: []byte("trusted.x")}},
		{MIDFSetXattr, &FSetXattrReq{FD: 7, Name: []byte("trusted.x"), Value: []byte("v")}},
		{MIDFListXattr, &FListXattrReq{FD: 6}},
		{MIDFRemoveXattr, &FRemoveXattrReq{FD: 6, Name: []byte("trusted.x")}},
		{MIDBindAt, &BindAtReq{DirFD: 1, Name: []byte("s")}},
		{MIDListen, &ListenReq{FD: 3}},
		{MIDAccept, &FDReq{FD: 3}},
		{MIDConnectWithCreds, &ConnectWithCredsReq{FD: 3}},
		{MIDChannel, &EmptyMessage{}},
		{MIDFlush, &FDReq{FD: 4}},
	}
}
