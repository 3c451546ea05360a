package fuseuring

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// mountMem mounts a fresh memfs in-process with transport tr and registers
// its unmount.
func mountMem(t *testing.T, tr Transport, fsys fuse.RawFileSystem) (string, *Server) {
	t.Helper()
	if tr == IOURing {
		requireURing(t)
	} else if os.Geteuid() != 0 {
		t.Skip("needs root to mount /dev/fuse directly")
	}
	mnt := t.TempDir()
	s, err := Mount(fsys, mnt, Options{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Unmount(mnt, unix.MNT_DETACH)
		done := make(chan error, 1)
		go func() { done <- s.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("server did not end within 10 s of unmount")
		}
	})
	return mnt, s
}

var bothTransports = []Transport{DevFuse, IOURing}

// TestTreeCopy extracts part of the Go tree through the mount and checks
// every entry's type, permissions, size, content and link target against
// the source: what tar users rely on.
func TestTreeCopy(t *testing.T) {
	root := goroot(t)
	for _, tr := range bothTransports {
		t.Run(tr.String(), func(t *testing.T) {
			mnt, s := mountMem(t, tr, newMemFS(memFSOptions{EntryTimeout: time.Second, AttrTimeout: time.Second}))
			cmd := exec.Command("sh", "-c", "tar cf - -C "+root+" src/fmt src/encoding src/strings | tar xpf - -C "+mnt)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("copy: %v\n%s", err, out)
			}
			n := compareTrees(t, filepath.Join(root, "src"), filepath.Join(mnt, "src"), []string{"fmt", "encoding", "strings"})
			if n < 100 {
				t.Fatalf("compared only %d entries", n)
			}
			st := s.Stats()
			if tr == IOURing && st.Ring < uint64(n) {
				t.Errorf("ring carried %d requests for %d entries: the copy did not go by the ring (stats %+v)", st.Ring, n, st)
			}
			if tr == DevFuse && st.Ring != 0 {
				t.Errorf("ring used without io_uring: %+v", st)
			}
		})
	}
}

func goroot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// compareTrees compares the named subtrees of a and b and returns the
// number of entries compared.
func compareTrees(t *testing.T, a, b string, subdirs []string) int {
	t.Helper()
	n := 0
	for _, sub := range subdirs {
		err := filepath.WalkDir(filepath.Join(a, sub), func(pa string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(a, pa)
			pb := filepath.Join(b, rel)
			sa, err := os.Lstat(pa)
			if err != nil {
				return err
			}
			sb, err := os.Lstat(pb)
			if err != nil {
				t.Errorf("%s: %v", rel, err)
				return nil
			}
			n++
			if sa.Mode() != sb.Mode() {
				t.Errorf("%s: mode %v, want %v", rel, sb.Mode(), sa.Mode())
			}
			if !sa.IsDir() && sa.Size() != sb.Size() {
				t.Errorf("%s: size %d, want %d", rel, sb.Size(), sa.Size())
			}
			if !sa.ModTime().Equal(sb.ModTime()) {
				t.Errorf("%s: mtime %v, want %v", rel, sb.ModTime(), sa.ModTime())
			}
			switch {
			case sa.Mode().IsRegular():
				if hashFile(t, pa) != hashFile(t, pb) {
					t.Errorf("%s: content differs", rel)
				}
			case sa.Mode()&fs.ModeSymlink != 0:
				la, _ := os.Readlink(pa)
				lb, err := os.Readlink(pb)
				if err != nil || la != lb {
					t.Errorf("%s: link %q (%v), want %q", rel, lb, err, la)
				}
			case sa.IsDir():
				ea, _ := os.ReadDir(pa)
				eb, err := os.ReadDir(pb)
				if err != nil || len(ea) != len(eb) {
					t.Errorf("%s: %d entries (%v), want %d", rel, len(eb), err, len(ea))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func hashFile(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestOperations checks the answers a user sees for the operations the
// dispatcher decodes, on both transports.
func TestOperations(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr.String(), func(t *testing.T) {
			mnt, _ := mountMem(t, tr, newMemFS(memFSOptions{}))
			p := func(s string) string { return filepath.Join(mnt, s) }
			big := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640 KiB: several WRITEs and READs
			steps := []struct {
				name string
				do   func() error
			}{
				{"mkdir", func() error { return os.Mkdir(p("d"), 0o750) }},
				{"mkdir exists", wantErr(func() error { return os.Mkdir(p("d"), 0o750) }, syscall.EEXIST)},
				{"write big", func() error { return os.WriteFile(p("d/big"), big, 0o640) }},
				{"read big", func() error { return wantContent(p("d/big"), big) }},
				{"truncate", func() error { return os.Truncate(p("d/big"), 10) }},
				{"read truncated", func() error { return wantContent(p("d/big"), big[:10]) }},
				{"symlink", func() error { return os.Symlink("d/big", p("ln")) }},
				{"readlink", func() error { return wantLink(p("ln"), "d/big") }},
				{"follow", func() error { return wantContent(p("ln"), big[:10]) }},
				{"hard link", func() error { return os.Link(p("d/big"), p("hl")) }},
				{"nlink 2", func() error { return wantNlink(p("hl"), 2) }},
				{"rename over", func() error {
					if err := os.WriteFile(p("x"), []byte("x"), 0o600); err != nil {
						return err
					}
					return os.Rename(p("x"), p("hl"))
				}},
				{"nlink 1", func() error { return wantNlink(p("d/big"), 1) }},
				{"rmdir not empty", wantErr(func() error { return os.Remove(p("d")) }, syscall.ENOTEMPTY)},
				{"readdir", func() error { return wantNames(p(""), "d", "hl", "ln") }},
				{"chmod", func() error {
					if err := os.Chmod(p("hl"), 0o604); err != nil {
						return err
					}
					fi, err := os.Stat(p("hl"))
					if err == nil && fi.Mode().Perm() != 0o604 {
						return errors.New("mode not changed: " + fi.Mode().String())
					}
					return err
				}},
				{"unlink open", func() error {
					f, err := os.Open(p("d/big"))
					if err != nil {
						return err
					}
					defer f.Close()
					if err := os.Remove(p("d/big")); err != nil {
						return err
					}
					b := make([]byte, 20)
					n, _ := f.Read(b)
					if !bytes.Equal(b[:n], big[:10]) {
						return errors.New("open unlinked file lost its data")
					}
					return nil
				}},
				{"lookup gone", wantErr(func() error { _, err := os.Lstat(p("d/big")); return err }, syscall.ENOENT)},
				{"rmdir", func() error { return os.Remove(p("d")) }},
				{"xattr unsupported", wantErr(func() error {
					_, err := unix.Getxattr(p("hl"), "user.x", make([]byte, 8))
					return err
				}, syscall.EOPNOTSUPP)},
				{"statfs", func() error {
					var st unix.Statfs_t
					if err := unix.Statfs(mnt, &st); err != nil {
						return err
					}
					if st.Bsize != 4096 {
						return errors.New("statfs block size not from the file system")
					}
					return nil
				}},
			}
			for _, s := range steps {
				if err := s.do(); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
			}
		})
	}
}

func wantErr(f func() error, want syscall.Errno) func() error {
	return func() error {
		err := f()
		if !errors.Is(err, want) {
			return errors.New("got " + errString(err) + ", want " + want.Error())
		}
		return nil
	}
}

func errString(err error) string {
	if err == nil {
		return "success"
	}
	return err.Error()
}

func wantContent(p string, want []byte) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if !bytes.Equal(b, want) {
		return errors.New("content differs")
	}
	return nil
}

func wantLink(p, want string) error {
	got, err := os.Readlink(p)
	if err == nil && got != want {
		return errors.New("link is " + got)
	}
	return err
}

func wantNlink(p string, want uint64) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	if st.Nlink != want {
		return errors.New("wrong link count")
	}
	return nil
}

func wantNames(dir string, want ...string) error {
	es, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		return errors.New("names " + strings.Join(got, ","))
	}
	return nil
}
