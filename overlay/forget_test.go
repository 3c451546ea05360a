package overlay_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"overlayfs/internal/mounttest"
)

// TestForgottenNodesComeBackWithSameInode makes the kernel forget every
// node (drop_caches) after a walk, so the daemon drops its pure-lower nodes,
// and checks that the names come back with the same inode numbers and data,
// while changed names keep their upper state.
func TestForgottenNodesComeBackWithSameInode(t *testing.T) {
	lower := t.TempDir()
	for d := 0; d < 5; d++ {
		dir := filepath.Join(lower, fmt.Sprintf("d%d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := 0; f < 20; f++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", f)), []byte(fmt.Sprintf("%d/%d", d, f)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	mounttest.GuardLower(t, lower)
	mnt := mounttest.Mount(t, lower, "--overlay2", "root:memory")
	if err := os.WriteFile(filepath.Join(mnt, "d0", "f0"), []byte("upper"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "d1", "f1")); err != nil {
		t.Fatal(err)
	}
	inos := map[string]uint64{}
	walk := func() {
		for d := 0; d < 5; d++ {
			for f := 0; f < 20; f++ {
				p := filepath.Join(mnt, fmt.Sprintf("d%d", d), fmt.Sprintf("f%d", f))
				var st unix.Stat_t
				err := unix.Stat(p, &st)
				if d == 1 && f == 1 {
					if err != unix.ENOENT {
						t.Errorf("removed name: stat says %v", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("stat %s: %v", p, err)
				}
				if old, ok := inos[p]; ok && old != st.Ino {
					t.Errorf("%s: inode %d became %d after the kernel forgot it", p, old, st.Ino)
				}
				inos[p] = st.Ino
				want := fmt.Sprintf("%d/%d", d, f)
				if d == 0 && f == 0 {
					want = "upper"
				}
				if b, err := os.ReadFile(p); err != nil || string(b) != want {
					t.Errorf("%s reads %q %v, want %q", p, b, err, want)
				}
			}
		}
	}
	walk()
	for i := 0; i < 2; i++ {
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
			t.Skipf("cannot drop caches: %v", err)
		}
		walk()
	}
}
