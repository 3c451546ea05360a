package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLookPath: PATH lookup inside a root follows symlinks within it, never
// out of it, and tells a missing command from one that is not executable.
func TestLookPath(t *testing.T) {
	root := t.TempDir()
	mk := func(p string, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	mk("usr/bin/tool", 0o755)
	mk("usr/bin/data", 0o644)
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	// An absolute symlink must resolve inside root, not on the host.
	if err := os.Symlink("/usr/bin/tool", filepath.Join(root, "usr/bin/abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "usr/bin/escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("loop", filepath.Join(root, "usr/bin/loop")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
		ok               bool
	}{
		{"tool", "/bin", "/bin/tool", true},
		{"abs", "/bin", "/bin/abs", true},
		{"/bin/../bin/tool", "", "/bin/tool", true},
		{"escape", "/usr/bin", "", false},
		{"data", "/usr/bin", "", false},
		{"loop", "/usr/bin", "", false},
		{"tool", "/sbin:/usr/bin", "/usr/bin/tool", true},
		{"/usr/bin/data", "", "", false},
	} {
		got, err := LookPath(root, tc.name, tc.path)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("LookPath(%q, PATH=%q) = %q, %v; want %q, ok=%v", tc.name, tc.path, got, err, tc.want, tc.ok)
		}
	}
}
