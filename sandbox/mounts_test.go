package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMakeInStaysInRoot: a mountpoint is made inside the root, following
// the root's symlinks as a process chrooted there would (an absolute
// symlink does not lead to the host), creating what is missing.
func TestMakeInStaysInRoot(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"lib": "/usr/lib", "host": outside, "dangling": "/nowhere/x"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		dest, want string
		file, ok   bool
	}{
		{dest: "/data", want: "/data", ok: true},
		{dest: "/a/b/c", want: "/a/b/c", ok: true},
		{dest: "/lib/mods", want: "/usr/lib/mods", ok: true},
		{dest: "/etc/resolv.conf", want: "/etc/resolv.conf", file: true, ok: true},
		// A symlink to what the root lacks is refused, never followed out.
		{dest: "/host/x"},
		{dest: "/dangling/y"},
	} {
		got, err := makeIn(root, tc.dest, tc.file)
		if (err == nil) != tc.ok {
			t.Errorf("makeIn(%q): %q, %v; want ok=%v", tc.dest, got, err, tc.ok)
		}
		if !tc.ok {
			continue
		}
		if want := filepath.Join(root, tc.want); got != want {
			t.Errorf("makeIn(%q) = %q, want %q", tc.dest, got, filepath.Join(root, tc.want))
		}
		fi, err := os.Stat(got)
		if err != nil || fi.IsDir() == tc.file {
			t.Errorf("makeIn(%q) made %v (%v), want file=%v", tc.dest, fi, err, tc.file)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("makeIn wrote outside the root: %v", ents)
	}
}
