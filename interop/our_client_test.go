package interop

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	ourlisafs "overlayfs/lisafs"
	"overlayfs/lower"
)

// ourClient connects our LISAFS client to a gofer started from program.
func ourClient(t *testing.T, g goferCmd) (*ourlisafs.Client, ourlisafs.Inode, int, *process) {
	t.Helper()
	fd, p := startGofer(t, g)
	program := g.prog
	c, root, rootFD, err := ourlisafs.NewClient(fd)
	if err != nil {
		t.Fatalf("our client against %s: %v", filepath.Base(program), err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		if rootFD >= 0 {
			unix.Close(rootFD)
		}
	})
	return c, root, rootFD, p
}

// TestOurClientAgainstGVisorGofer: our client starts channels against
// gVisor's gofer and uses them, concurrently, for walks, opens (with
// donated fds), reads, writes, directory listings and closes.
func TestOurClientAgainstGVisorGofer(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{}
	for _, n := range []string{"a", "b", "c", "d"} {
		files["dir/"+n] = "content of " + n
	}
	writeTree(t, root, files)
	c, rootIno, rootFD, p := ourClient(t, theirs(root))
	if rootFD < 0 {
		t.Errorf("gVisor's gofer (directfs) donated no mount-point fd")
	}
	if !c.Supported(ourlisafs.MIDChannel) || c.Channels() < 2 {
		t.Fatalf("our client has %d channels with gVisor's gofer", c.Channels())
	}
	if w := windowsMapped(t, p.cmd.Process.Pid, "flipcall_packet_windows"); w < c.Channels() {
		t.Errorf("gVisor's gofer maps %d windows for our %d channels", w, c.Channels())
	}
	var wg sync.WaitGroup
	for _, n := range []string{"a", "b", "c", "d"} {
		wg.Add(1)
		go func(n string) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				st, ins, err := c.Walk(rootIno.ControlFD, []string{"dir", n})
				if err != nil || st != ourlisafs.WalkSuccess || len(ins) != 2 {
					t.Errorf("walk dir/%s: %v %v", n, st, err)
					return
				}
				open, hostFD, err := c.OpenAt(ins[1].ControlFD, unix.O_RDONLY)
				if err != nil {
					t.Errorf("open dir/%s: %v", n, err)
					return
				}
				if hostFD < 0 {
					t.Errorf("gVisor's gofer donated no fd for dir/%s", n)
				} else {
					unix.Close(hostFD)
				}
				buf := make([]byte, 64)
				k, err := c.PRead(open, 0, buf)
				if err != nil || string(buf[:k]) != "content of "+n {
					t.Errorf("read dir/%s: %q %v", n, buf[:k], err)
				}
				if err := c.CloseFDs(open, ins[0].ControlFD, ins[1].ControlFD); err != nil {
					t.Errorf("close: %v", err)
				}
			}
		}(n)
	}
	wg.Wait()
	// Writes, creation and listing.
	ino, open, hostFD, err := c.OpenCreateAt(rootIno.ControlFD, "new", unix.O_RDWR, 0o644, ourlisafs.NoUID, ourlisafs.NoGID)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if hostFD >= 0 {
		unix.Close(hostFD)
	}
	if n, err := c.PWrite(open, 0, []byte("written")); err != nil || n != 7 {
		t.Fatalf("write: %d %v", n, err)
	}
	if st, err := c.FStat(ino.ControlFD); err != nil || st.Size != 7 {
		t.Fatalf("stat after write: %d %v", st.Size, err)
	}
	dir, _, err := c.OpenAt(rootIno.ControlFD, unix.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := c.Getdents64(dir, 4096)
	if err != nil || len(ents) < 2 {
		t.Fatalf("getdents: %v %v", ents, err)
	}
	if _, err := c.FStat(12345); err != unix.EBADF {
		t.Fatalf("FStat of an unknown FDID: %v, want EBADF", err)
	}
}

// TestWalkOpenDirAgainstGVisorGofer: gVisor's gofer answers our WalkOpenDir
// extension with EOPNOTSUPP and goes on serving; our client remembers it,
// and our lower layer, reading through the gofer alone (directfs off),
// falls back to Walk, OpenAt and Getdents64 and finds the whole tree.
// Against our gofer the extension is served.
func TestWalkOpenDirAgainstGVisorGofer(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{}
	for i := range 5 {
		for j := range 4 {
			files[fmt.Sprintf("d%d/e%d/f%d", i, j, i*4+j)] = strings.Repeat("x", i*4+j)
		}
	}
	writeTree(t, root, files)

	c, rootIno, _, _ := ourClient(t, theirs(root))
	if _, err := c.WalkOpenDir(rootIno.ControlFD, "d0", 65536); err != unix.EOPNOTSUPP {
		t.Fatalf("WalkOpenDir against gVisor's gofer: %v, want EOPNOTSUPP", err)
	}
	if !c.WalkOpenDirRefused() {
		t.Errorf("the refusal was not remembered")
	}
	if st, ins, err := c.Walk(rootIno.ControlFD, []string{"d0"}); err != nil || st != ourlisafs.WalkSuccess || len(ins) != 1 {
		t.Fatalf("walk after the refusal: %v %v", st, err)
	}

	ourC, ourRoot, _, _ := ourClient(t, ours(root))
	r, err := ourC.WalkOpenDir(ourRoot.ControlFD, "d0", 65536)
	if err != nil || !r.End() || len(r.Dirents) != 4 {
		t.Fatalf("WalkOpenDir against our gofer: %d entries, end %v, %v", len(r.Dirents), r.End(), err)
	}

	for _, g := range []goferCmd{theirs(root), ours(root)} {
		t.Run(filepath.Base(g.prog), func(t *testing.T) {
			fd, _ := startGofer(t, g)
			c, rootIno, rootFD, err := ourlisafs.NewClient(fd)
			if err != nil {
				t.Fatal(err)
			}
			l := lower.New(c, rootIno, rootFD)
			l.SetDirectFS(false)
			t.Cleanup(func() { _ = l.Close() })
			found := map[string]int64{}
			var walk func(dir *lower.Node, path string)
			walk = func(dir *lower.Node, path string) {
				ents, err := l.ReadDir(dir)
				if err != nil {
					t.Fatalf("list %q: %v", path, err)
				}
				for _, e := range ents {
					n, err := l.Lookup(dir, e.Name)
					if err != nil {
						t.Fatalf("lookup %s/%s: %v", path, e.Name, err)
					}
					p := strings.TrimPrefix(path+"/"+e.Name, "/")
					if n.IsDir() {
						walk(n, p)
					} else {
						found[p] = int64(n.Attr().Size)
					}
				}
			}
			walk(l.Root(), "")
			if len(found) != len(files) {
				t.Errorf("found %d files, want %d", len(found), len(files))
			}
			for p, content := range files {
				if size, ok := found[p]; !ok || size != int64(len(content)) {
					t.Errorf("%s: found %v with size %d, want size %d", p, ok, size, len(content))
				}
			}
		})
	}
}
