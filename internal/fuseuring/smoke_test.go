package fuseuring

import (
	"os"
	"path/filepath"
	"testing"

	"overlayfs/internal/fuseuring/memfs"
)

func TestSmoke(t *testing.T) {
	requireURing(t)
	mnt := t.TempDir()
	fs := memfs.New(memfs.Options{})
	s, err := Mount(fs, mnt, Options{Transport: IOURing})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Unmount(); err != nil {
			t.Error(err)
		}
		t.Logf("stats %+v", s.Stats())
	}()
	p := filepath.Join(mnt, "a")
	if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "hello" {
		t.Fatalf("read %q %v", b, err)
	}
	t.Logf("stats %+v", s.Stats())
}
