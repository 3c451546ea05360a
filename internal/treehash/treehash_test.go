package treehash

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDiffSeesEveryKindOfChange changes a tree in each way the digest must
// notice, one at a time, and checks that Diff names exactly that path.
func TestDiffSeesEveryKindOfChange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(root string) error
		want   string
	}{
		{"contents", func(r string) error { return os.WriteFile(filepath.Join(r, "f"), []byte("other"), 0o644) }, "changed f"},
		{"mode", func(r string) error { return os.Chmod(filepath.Join(r, "f"), 0o600) }, "changed f"},
		{"owner", func(r string) error { return os.Lchown(filepath.Join(r, "f"), 1, 1) }, "changed f"},
		{"xattr", func(r string) error { return unix.Lsetxattr(filepath.Join(r, "f"), "user.x", []byte("1"), 0) }, "changed f"},
		{"symlink target", func(r string) error {
			if err := os.Remove(filepath.Join(r, "l")); err != nil {
				return err
			}
			return os.Symlink("g", filepath.Join(r, "l"))
		}, "changed l"},
		{"removal", func(r string) error { return os.Remove(filepath.Join(r, "d", "g")) }, "removed d/g"},
		{"addition", func(r string) error { return os.WriteFile(filepath.Join(r, "d", "new"), nil, 0o644) }, "added d/new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.WriteFile(filepath.Join(root, "f"), []byte("data"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("f", filepath.Join(root, "l")); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(root, "d"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "d", "g"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			before, err := Take(root)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.change(root); err != nil {
				if os.Geteuid() != 0 {
					t.Skipf("cannot make the change: %v", err)
				}
				t.Fatal(err)
			}
			after, err := Take(root)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range before.DiffPaths(after) {
				if !strings.HasPrefix(d, "changed d") && d != "changed ." { // the parent's mtime moves too
					got = append(got, d)
				}
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("DiffPaths = %v, want [%s]", got, tc.want)
			}
			if d := before.Diff(before); len(d) != 0 {
				t.Errorf("a snapshot differs from itself: %v", d)
			}
		})
	}
}
