package fusekit

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

func TestStatusClampsErrnos(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want fuse.Status
	}{
		{nil, fuse.OK},
		{unix.ENOENT, fuse.ENOENT},
		{fmt.Errorf("walk: %w", unix.EACCES), fuse.EACCES},
		{unix.Errno(511), fuse.Status(511)},
		{unix.Errno(512), fuse.EIO},   // the kernel never completes such a reply
		{unix.Errno(70000), fuse.EIO}, // a hostile gofer's errno
		{unix.Errno(0), fuse.EIO},     // "success" as an error
		{fmt.Errorf("no errno"), fuse.EIO},
	} {
		if got := Status(tc.err); got != tc.want {
			t.Errorf("Status(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestInoMap(t *testing.T) {
	var m InoMap
	first := m.Get(DevIno{Dev: 10, Ino: 42})
	if first != 42 {
		t.Errorf("the first device's inode 42 maps to %#x, want 42 (host numbers kept)", first)
	}
	if again := m.Get(DevIno{Dev: 10, Ino: 42}); again != first {
		t.Errorf("the same file maps to %#x, then %#x", first, again)
	}
	second := m.Get(DevIno{Dev: 11, Ino: 42})
	if second != 1<<tagShift|42 {
		t.Errorf("the second device's inode 42 maps to %#x, want tag 1", second)
	}
	big := m.Get(DevIno{Dev: 10, Ino: 1 << 50})
	if big>>tagShift != allocTag || m.Get(DevIno{Dev: 10, Ino: 1 << 50}) != big {
		t.Errorf("a 50-bit host number maps to %#x, want a stable allocated number", big)
	}
	seen := map[uint64]bool{first: true, second: true, big: true}
	for range 100 {
		v := m.Alloc()
		if seen[v] || v>>tagShift != allocTag {
			t.Fatalf("Alloc returned %#x: reused or not in the allocated range", v)
		}
		seen[v] = true
	}
}

func TestHandles(t *testing.T) {
	var tab Handles[string]
	a, b := tab.Add("a"), tab.Add("b")
	if a == 0 || a == b {
		t.Fatalf("handle numbers %d and %d: want distinct and non-zero", a, b)
	}
	if h, ok := tab.Get(a); !ok || h != "a" {
		t.Errorf("Get(%d) = %q, %v", a, h, ok)
	}
	if h, ok := tab.Drop(a); !ok || h != "a" {
		t.Errorf("Drop(%d) = %q, %v", a, h, ok)
	}
	if _, ok := tab.Get(a); ok {
		t.Errorf("a dropped handle is still found")
	}
	if rest := tab.DropAll(); len(rest) != 1 || rest[0] != "b" {
		t.Errorf("DropAll = %v, want [b]", rest)
	}
	if _, ok := tab.Get(b); ok {
		t.Errorf("DropAll left a handle")
	}
}

func TestXattrReply(t *testing.T) {
	v := []byte("value")
	for _, tc := range []struct {
		dest int
		n    uint32
		st   fuse.Status
	}{{0, 5, fuse.OK}, {3, 5, fuse.ERANGE}, {5, 5, fuse.OK}, {64, 5, fuse.OK}} {
		if n, st := XattrReply(make([]byte, tc.dest), v); n != tc.n || st != tc.st {
			t.Errorf("dest of %d: %d, %v; want %d, %v", tc.dest, n, st, tc.n, tc.st)
		}
	}
	if got := string(XattrList([]string{"user.a", "trusted.x", "user.b"}, func(s string) bool { return s == "trusted.x" })); got != "user.a\x00user.b\x00" {
		t.Errorf("XattrList = %q", got)
	}
}

func TestNewOwner(t *testing.T) {
	caller := fuse.Caller{Owner: fuse.Owner{Uid: 1000, Gid: 100}}
	for _, tc := range []struct {
		dirMode, mode     uint32
		wantGID, wantMode uint32
	}{
		{unix.S_IFDIR | 0o755, unix.S_IFREG | 0o644, 100, unix.S_IFREG | 0o644},
		{unix.S_IFDIR | unix.S_ISGID | 0o775, unix.S_IFREG | 0o644, 50, unix.S_IFREG | 0o644},
		{unix.S_IFDIR | unix.S_ISGID | 0o775, unix.S_IFDIR | 0o755, 50, unix.S_IFDIR | unix.S_ISGID | 0o755},
	} {
		uid, gid, mode := NewOwner(tc.dirMode, 50, caller, tc.mode)
		if uid != 1000 || gid != tc.wantGID || mode != tc.wantMode {
			t.Errorf("dir %o, mode %o: %d %d %o; want 1000 %d %o", tc.dirMode, tc.mode, uid, gid, mode, tc.wantGID, tc.wantMode)
		}
	}
}

// TestFusermountOptions pins the names handed to fusermount3 for a
// non-root mount: the ones it takes, relatime left to the kernel's
// default, and an error naming each option it refuses (libfuse 3.14's
// fusermount3 rejects strictatime, nodiratime and nosymfollow).
func TestFusermountOptions(t *testing.T) {
	cases := []struct {
		opts    string
		want    string
		wantErr string
	}{
		{"", "", ""},
		{"ro,nosuid,nodev,noexec,noatime,sync,dirsync", "ro,nosuid,nodev,noexec,noatime,sync,dirsync", ""},
		{"relatime,rw,exec", "", ""},
		{"noexec,strictatime", "", "strictatime"},
		{"nodiratime", "", "nodiratime"},
		{"nosymfollow", "", "nosymfollow"},
	}
	for _, c := range cases {
		var f VFSFlags
		for _, o := range strings.Split(c.opts, ",") {
			if o != "" && !f.Apply(o) {
				t.Fatalf("Apply(%q) refused", o)
			}
		}
		got, err := f.FusermountOptions()
		switch {
		case c.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: %v, %v; want an error naming %s", c.opts, got, err, c.wantErr)
			}
		case err != nil || strings.Join(got, ",") != c.want:
			t.Errorf("%q: %q, %v; want %q", c.opts, strings.Join(got, ","), err, c.want)
		}
	}
}
