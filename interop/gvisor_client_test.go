package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/abi/linux"
	"gvisor.dev/gvisor/pkg/context"
	"gvisor.dev/gvisor/pkg/lisafs"
	"gvisor.dev/gvisor/pkg/unet"
)

// gvisorClient connects gVisor's LISAFS client to a gofer started from
// program and args (fd 3 is the socket) and starts its channels, which must
// succeed, as a sentry without directfs requires.
func gvisorClient(t *testing.T, g goferCmd) (*lisafs.Client, lisafs.Inode, int, *process) {
	t.Helper()
	fd, p := startGofer(t, g)
	program := g.prog
	sock, err := unet.NewSocket(fd)
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	c, root, rootFD, err := lisafs.NewClient(sock)
	if err != nil {
		t.Fatalf("gVisor NewClient against %s: %v", filepath.Base(program), err)
	}
	t.Cleanup(func() {
		c.Close()
		if rootFD >= 0 {
			unix.Close(rootFD)
		}
	})
	if err := c.StartChannels(); err != nil {
		t.Fatalf("gVisor StartChannels against %s: %v", filepath.Base(program), err)
	}
	return c, root, rootFD, p
}

// ours and theirs start a gofer on root: overlayfs gofer, and gVisor's.
func ours(root string, extra ...string) goferCmd {
	return goferCmd{bins.overlayfs, append([]string{"gofer", "--root", root, "--fd", "3"}, extra...)}
}

func theirs(root string, extra ...string) goferCmd {
	return goferCmd{bins.gvisorGofer, append([]string{"--root", root, "--fd", "3"}, extra...)}
}

// transcript records what each step of a scenario observed, in a form that
// does not depend on the server (no inode numbers, times or FDIDs).
type transcript []string

func (tr *transcript) add(format string, args ...any) {
	*tr = append(*tr, fmt.Sprintf(format, args...))
}

// errno renders an error as its errno name ("ok" for nil).
func errno(err error) string {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(unix.Errno); ok {
		return unix.ErrnoName(e)
	}
	return "error " + err.Error()
}

func ftype(mode uint16) string {
	switch uint32(mode) & unix.S_IFMT {
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFREG:
		return "reg"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("mode %o", mode)
}

// scenario runs every kind of RPC, successes and errors, through gVisor's
// client and records the outcomes.
func scenario(t *testing.T, c *lisafs.Client, root lisafs.Inode, rootHostFD int) transcript {
	ctx := context.Background()
	var tr transcript
	rootFD := fdOf(c, root.ControlFD)
	tr.add("root %s, mount-point fd donated %v", ftype(root.Stat.Mode), rootHostFD >= 0)

	st, ins, err := rootFD.WalkMultiple(ctx, []string{"d", "f"})
	tr.add("walk d/f: %s status %d, %d inodes", errno(err), st, len(ins))
	if len(ins) == 2 {
		tr.add("  d/f is %s of %d bytes", ftype(ins[1].Stat.Mode), ins[1].Stat.Size)
	}
	_, miss, err := rootFD.WalkMultiple(ctx, []string{"d", "missing", "x"})
	tr.add("walk d/missing/x: %s, %d inodes", errno(err), len(miss))
	stl, lnk, err := rootFD.WalkMultiple(ctx, []string{"link", "x"})
	tr.add("walk link/x: %s status %d, %d inodes", errno(err), stl, len(lnk))
	stats, err := rootFD.WalkStat(ctx, []string{"", "d", "f"})
	tr.add("walkstat ./d/f: %s, %d stats", errno(err), len(stats))
	if len(ins) != 2 {
		t.Fatalf("cannot go on without d/f: %v", tr)
	}
	dir, file := fdOf(c, ins[0].ControlFD), fdOf(c, ins[1].ControlFD)

	open, hostFD, err := file.OpenAt(ctx, unix.O_RDONLY)
	tr.add("open d/f: %s, host fd %v", errno(err), hostFD >= 0)
	if hostFD >= 0 {
		unix.Close(hostFD)
	}
	buf := make([]byte, 64)
	n, err := fdOf(c, open).Read(ctx, buf, 1)
	tr.add("read d/f@1: %s %q", errno(err), buf[:n])
	_, _, err = dir.OpenAt(ctx, unix.O_RDWR)
	tr.add("open d rw: %s", errno(err))
	_, _, err = fdOf(c, lnk[0].ControlFD).OpenAt(ctx, unix.O_RDONLY)
	tr.add("open symlink: %s", errno(err))

	nin, nopen, nfd, err := dir.OpenCreateAt(ctx, "new", unix.O_RDWR, 0o640, lisafs.NoUID, lisafs.NoGID)
	tr.add("create d/new: %s, %s mode %o, host fd %v", errno(err), ftype(nin.Stat.Mode), nin.Stat.Mode&0o7777, nfd >= 0)
	if nfd >= 0 {
		unix.Close(nfd)
	}
	_, _, _, err = dir.OpenCreateAt(ctx, "new", unix.O_RDWR, 0o640, lisafs.NoUID, lisafs.NoGID)
	tr.add("create d/new again: %s", errno(err))
	newCtlV, newOpenV := c.NewFD(nin.ControlFD), c.NewFD(nopen)
	newCtl, newOpen := &newCtlV, &newOpenV
	w, err := newOpen.Write(ctx, []byte("abcdef"), 0)
	tr.add("write d/new: %s %d", errno(err), w)
	n, err = newOpen.Read(ctx, buf, 2)
	tr.add("read d/new@2: %s %q", errno(err), buf[:n])
	tr.add("sync d/new: %s", errno(newOpen.Sync(ctx)))
	_, err = fdOf(c, open).Write(ctx, []byte("x"), 0)
	tr.add("write to a read-only open: %s", errno(err))

	var lst linux.Statx
	lst.Mask = linux.STATX_MODE | linux.STATX_SIZE
	lst.Mode = 0o600
	lst.Size = 10
	fmask, ferr, err := newCtl.SetStat(ctx, &lst)
	tr.add("setstat d/new mode 600 size 10: %s, failed mask %#x %s", errno(err), fmask, errno(ferr))
	var sx lisafs.Statx
	err = newCtl.StatTo(ctx, &sx)
	tr.add("stat d/new: %s mode %o size %d nlink %d", errno(err), sx.Mode&0o7777, sx.Size, sx.Nlink)
	tr.add("allocate d/new 0..8192: %s", errno(newOpen.Allocate(ctx, 0, 0, 8192)))
	_ = newCtl.StatTo(ctx, &sx)
	tr.add("  size now %d", sx.Size)
	dirOpen, _, err := dir.OpenAt(ctx, unix.O_RDONLY)
	tr.add("open d: %s", errno(err))
	tr.add("allocate on a directory: %s", errno(fdOf(c, dirOpen).Allocate(ctx, 0, 0, 10)))

	sub, err := rootFD.MkdirAt(ctx, "sub", 0o751, lisafs.NoUID, lisafs.NoGID)
	tr.add("mkdir sub: %s %s mode %o", errno(err), ftype(sub.Stat.Mode), sub.Stat.Mode&0o7777)
	_, err = rootFD.MkdirAt(ctx, "sub", 0o751, lisafs.NoUID, lisafs.NoGID)
	tr.add("mkdir sub again: %s", errno(err))
	_, err = rootFD.MkdirAt(ctx, "a/b", 0o751, lisafs.NoUID, lisafs.NoGID)
	tr.add("mkdir a/b: %s", errno(err))
	sl, err := rootFD.SymlinkAt(ctx, "sl", "some/target", lisafs.NoUID, lisafs.NoGID)
	tr.add("symlink sl: %s %s", errno(err), ftype(sl.Stat.Mode))
	target, err := fdOf(c, sl.ControlFD).ReadLinkAt(ctx)
	tr.add("readlink sl: %s %q", errno(err), target)
	_, err = file.ReadLinkAt(ctx)
	tr.add("readlink of a file: %s", errno(err))
	hard, err := rootFD.LinkAt(ctx, nin.ControlFD, "hard")
	tr.add("link hard: %s nlink %d", errno(err), hard.Stat.Nlink)
	_, err = rootFD.LinkAt(ctx, ins[0].ControlFD, "dirlink")
	tr.add("link to a directory: %s", errno(err))
	fifo, err := rootFD.MknodAt(ctx, "fifo", linux.FileMode(unix.S_IFIFO|0o644), lisafs.NoUID, lisafs.NoGID, 0, 0)
	tr.add("mknod fifo: %s %s", errno(err), ftype(fifo.Stat.Mode))
	_, _, err = fdOf(c, fifo.ControlFD).OpenAt(ctx, unix.O_RDONLY)
	tr.add("open fifo: %s", errno(err))
	tr.add("rename hard -> sub/moved: %s", errno(rootFD.RenameAt(ctx, "hard", sub.ControlFD, "moved", 0)))
	tr.add("rename missing: %s", errno(rootFD.RenameAt(ctx, "missing", sub.ControlFD, "x", 0)))
	tr.add("rename noreplace onto d: %s", errno(rootFD.RenameAt(ctx, "sl", root.ControlFD, "d", unix.RENAME_NOREPLACE)))
	_, _, err = rootFD.WalkMultiple(ctx, []string{"sub", "moved"})
	tr.add("walk sub/moved: %s", errno(err))

	rootOpen, rfd, err := rootFD.OpenAt(ctx, unix.O_RDONLY)
	tr.add("open root: %s, host fd %v", errno(err), rfd >= 0)
	if rfd >= 0 {
		unix.Close(rfd)
	}
	var names []string
	for {
		ents, err := fdOf(c, rootOpen).Getdents64(ctx, 4096)
		if err != nil {
			tr.add("getdents: %s", errno(err))
			break
		}
		if len(ents) == 0 {
			break
		}
		for _, e := range ents {
			names = append(names, string(e.Name))
		}
	}
	slices.Sort(names)
	tr.add("getdents root: %s", strings.Join(names, " "))

	tr.add("setxattr user.k: %s", errno(newCtl.SetXattr(ctx, "user.k", "v1", 0)))
	tr.add("setxattr user.k create: %s", errno(newCtl.SetXattr(ctx, "user.k", "v2", unix.XATTR_CREATE)))
	v, err := newCtl.GetXattr(ctx, "user.k", 0)
	tr.add("getxattr user.k: %s %q", errno(err), v)
	_, err = newCtl.GetXattr(ctx, "user.k", 1)
	tr.add("getxattr user.k into 1 byte: %s", errno(err))
	xs, err := newCtl.ListXattr(ctx, 0)
	tr.add("listxattr: %s %v", errno(err), slices.Contains(xs, "user.k"))
	tr.add("removexattr: %s", errno(newCtl.RemoveXattr(ctx, "user.k")))
	_, err = newCtl.GetXattr(ctx, "user.k", 0)
	tr.add("getxattr removed: %s", errno(err))

	var sfs lisafs.StatFS
	err = rootFD.StatFSTo(ctx, &sfs)
	tr.add("statfs: %s namelen %d", errno(err), sfs.NameLength)
	tr.add("unlink sub: %s", errno(rootFD.UnlinkAt(ctx, "sub", 0)))
	tr.add("rmdir sub (not empty): %s", errno(rootFD.UnlinkAt(ctx, "sub", unix.AT_REMOVEDIR)))
	tr.add("unlink sub/moved: %s", errno(fdOf(c, sub.ControlFD).UnlinkAt(ctx, "moved", 0)))
	tr.add("rmdir sub: %s", errno(rootFD.UnlinkAt(ctx, "sub", unix.AT_REMOVEDIR)))
	tr.add("unlink missing: %s", errno(rootFD.UnlinkAt(ctx, "missing", 0)))
	tr.add("unlink ..: %s", errno(rootFD.UnlinkAt(ctx, "..", 0)))
	_, err = rootFD.Walk(ctx, "..")
	tr.add("walk ..: %s", errno(err))
	return tr
}

// scenarioTree is the lower tree every scenario starts from.
func scenarioTree(t *testing.T) string {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"d/f": "hello"})
	if err := os.Symlink("d/f", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestGVisorClientAgainstOurGofer runs gVisor's client, with channels,
// through every RPC against overlayfs gofer and against gVisor's own gofer
// and requires the same outcome from both.
func TestGVisorClientAgainstOurGofer(t *testing.T) {
	run := func(g goferCmd) (transcript, int) {
		c, root, rootFD, p := gvisorClient(t, g)
		tr := scenario(t, c, root, rootFD)
		return tr, p.cmd.Process.Pid
	}
	theirRoot, ourRoot := scenarioTree(t), scenarioTree(t)
	want, _ := run(theirs(theirRoot))
	got, pid := run(ours(ourRoot))
	t.Logf("transcript:\n%s", strings.Join(got, "\n"))
	if w := windowsMapped(t, pid, "lisafs-channel"); w < 2 {
		t.Errorf("overlayfs gofer maps %d channel windows, want gVisor's client's 2 or more", w)
	}
	for i := 0; i < max(len(want), len(got)); i++ {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			t.Errorf("step %d:\n  gVisor gofer:    %s\n  overlayfs gofer: %s", i, w, g)
		}
	}
	for _, must := range []string{
		"root dir, mount-point fd donated true",
		`read d/f@1: ok "ello"`,
		"open root: ok, host fd true",
		`read d/new@2: ok "cdef"`,
		"stat d/new: ok mode 600 size 10 nlink 1",
	} {
		if !slices.Contains(got, must) {
			t.Errorf("overlayfs gofer: no %q in\n%s", must, strings.Join(got, "\n"))
		}
	}
}

// TestGVisorClientReadOnly: a read-only overlayfs gofer refuses every
// change exactly as a read-only gVisor gofer does.
func TestGVisorClientReadOnly(t *testing.T) {
	run := func(g goferCmd) transcript {
		c, root, _, _ := gvisorClient(t, g)
		ctx := context.Background()
		rootFD := fdOf(c, root.ControlFD)
		var tr transcript
		_, ins, err := rootFD.WalkMultiple(ctx, []string{"d", "f"})
		tr.add("walk: %s", errno(err))
		f := fdOf(c, ins[1].ControlFD)
		_, _, err = f.OpenAt(ctx, unix.O_RDWR)
		tr.add("open rw: %s", errno(err))
		_, _, err = f.OpenAt(ctx, unix.O_RDONLY|unix.O_TRUNC)
		tr.add("open trunc: %s", errno(err))
		_, _, _, err = rootFD.OpenCreateAt(ctx, "n", unix.O_RDWR, 0o644, lisafs.NoUID, lisafs.NoGID)
		tr.add("create: %s", errno(err))
		_, err = rootFD.MkdirAt(ctx, "n", 0o755, lisafs.NoUID, lisafs.NoGID)
		tr.add("mkdir: %s", errno(err))
		tr.add("unlink: %s", errno(rootFD.UnlinkAt(ctx, "link", 0)))
		tr.add("rename: %s", errno(rootFD.RenameAt(ctx, "link", root.ControlFD, "l2", 0)))
		tr.add("setxattr: %s", errno(f.SetXattr(ctx, "user.a", "b", 0)))
		var lst linux.Statx
		lst.Mask = linux.STATX_MODE
		_, _, err = f.SetStat(ctx, &lst)
		tr.add("setstat: %s", errno(err))
		return tr
	}
	want := run(theirs(scenarioTree(t), "--read-only"))
	got := run(ours(scenarioTree(t), "--read-only"))
	if !slices.Equal(want, got) {
		t.Errorf("read-only gofers differ:\ngVisor:    %q\noverlayfs: %q", want, got)
	}
	if !slices.Contains(got, "create: EROFS") {
		t.Errorf("read-only overlayfs gofer: %q", got)
	}
}

// fdOf wraps an FDID of c for gVisor's pointer-receiver methods.
func fdOf(c *lisafs.Client, id lisafs.FDID) *lisafs.ClientFD {
	fd := c.NewFD(id)
	return &fd
}
