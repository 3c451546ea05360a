package main

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/posixtest"
	"golang.org/x/sys/unix"

	"overlayfs/internal/mounttest"
)

// layerEntry is one entry of a test layer, in a little language:
//
//	"d:PATH"        a directory
//	"f:PATH=TEXT"   a regular file
//	"l:PATH=TARGET" a symlink
//	"h:PATH=OLD"    a hard link to OLD
//	"w:PATH"        a whiteout
//	"o:PATH"        an opaque directory
type layerEntry = string

// markerFormat is how a test layer writes whiteouts and opaque directories.
type markerFormat int

const (
	overlayMarkers markerFormat = iota // 0/0 devices, trusted.overlay.opaque
	userMarkers                        // 0/0 devices, user.overlay.opaque
	ociMarkers                         // .wh.NAME, .wh..wh..opq
)

// writeLayer builds a layer in dir with the given marker format.
func writeLayer(t *testing.T, dir string, format markerFormat, entries []layerEntry) {
	t.Helper()
	for _, e := range entries {
		kind, rest, _ := strings.Cut(e, ":")
		p, val, _ := strings.Cut(rest, "=")
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch kind {
		case "d":
			err = os.Mkdir(full, 0o755)
		case "f":
			err = os.WriteFile(full, []byte(val), 0o644)
		case "l":
			err = os.Symlink(val, full)
		case "h":
			err = os.Link(filepath.Join(dir, val), full)
		case "w":
			if format == ociMarkers {
				err = os.WriteFile(filepath.Join(filepath.Dir(full), ".wh."+filepath.Base(full)), nil, 0o644)
			} else {
				err = unix.Mknod(full, unix.S_IFCHR|0o600, 0)
			}
		case "o":
			if err = os.Mkdir(full, 0o755); err != nil {
				break
			}
			switch format {
			case ociMarkers:
				err = os.WriteFile(filepath.Join(full, ".wh..wh..opq"), nil, 0o644)
			case userMarkers:
				err = unix.Setxattr(full, "user.overlay.opaque", []byte("y"), 0)
			default:
				err = unix.Setxattr(full, "trusted.overlay.opaque", []byte("y"), 0)
			}
		default:
			t.Fatalf("bad layer entry %q", e)
		}
		if err != nil {
			t.Fatalf("layer entry %q: %v", e, err)
		}
	}
}

// kernelLowerOverlay mounts a read-only Linux overlayfs of lowers (top-most
// first) on a new directory, unmounted at cleanup.
func kernelLowerOverlay(t *testing.T, lowers []string) string {
	t.Helper()
	mnt := t.TempDir()
	for _, l := range lowers {
		if strings.ContainsAny(l, ",:") {
			t.Fatalf("a kernel lowerdir cannot hold %q", l)
		}
	}
	return mountKernelOverlay(t, mnt, unix.MS_RDONLY, "lowerdir="+strings.Join(lowers, ":"))
}

// treeOf lists a tree as "path kind perm size content-or-target" lines,
// plus the (dev, ino) of every non-directory so callers can check identity.
func treeOf(t *testing.T, root string) []string {
	t.Helper()
	return walkTree(t, root, false)
}

// kernelTreeOf is treeOf for a Linux overlayfs mount, which lists a
// whiteout of a directory that does not merge with one below, but cannot
// stat it: such a name counts as absent.
func kernelTreeOf(t *testing.T, root string) []string {
	t.Helper()
	return walkTree(t, root, true)
}

func walkTree(t *testing.T, root string, skipUnstatable bool) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			if skipUnstatable && os.IsNotExist(err) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if skipUnstatable && err == unix.ENOENT {
				return nil
			}
			return err
		}
		line := fmt.Sprintf("%s %o", rel, st.Mode)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %q", b)
		case unix.S_IFLNK:
			tgt, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + tgt
		case unix.S_IFCHR:
			line += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

// checkInodes checks that every entry's d_ino is its st_ino, and that no two
// files share an st_ino unless they are hard links of one file.
func checkInodes(t *testing.T, root string) {
	t.Helper()
	byIno := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Getdents(int(f.Fd()), buf)
			if err != nil {
				return err
			}
			if n == 0 {
				return nil
			}
			for off := 0; off < n; {
				reclen := int(buf[off+16]) | int(buf[off+17])<<8
				ino := uint64(0)
				for i := 7; i >= 0; i-- {
					ino = ino<<8 | uint64(buf[off+i])
				}
				name := unix.ByteSliceToString(buf[off+19 : off+reclen])
				off += reclen
				if name == "." || name == ".." {
					continue
				}
				var st unix.Stat_t
				child := filepath.Join(p, name)
				if err := unix.Lstat(child, &st); err != nil {
					return err
				}
				if st.Ino != ino {
					t.Errorf("%s: d_ino %d, st_ino %d", child, ino, st.Ino)
				}
				rel, _ := filepath.Rel(root, child)
				if other, ok := byIno[st.Ino]; ok && (st.Nlink < 2 || st.Mode&unix.S_IFMT == unix.S_IFDIR) {
					t.Errorf("%s and %s share st_ino %d", other, rel, st.Ino)
				}
				byIno[st.Ino] = rel
			}
		}
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
}

// layerStacks are stacks of layers, top-most first, with whiteouts and
// opaque directories in the upper layers.
var layerStacks = []struct {
	name   string
	layers [][]layerEntry
}{
	{"two layers", [][]layerEntry{
		{"f:top=a", "d:d", "f:d/new=a", "w:d/gone", "w:w", "f:shadow=a", "o:op", "f:op/only=a", "d:fil"},
		{"f:bottom=b", "d:d", "f:d/gone=b", "f:d/kept=b", "f:w=b", "d:shadow", "f:shadow/x=b", "d:op", "f:op/hidden=b", "f:fil=b", "l:link=d/kept", "f:hl=b", "h:hl2=hl"},
	}},
	{"three layers", [][]layerEntry{
		{"d:d", "f:d/a=a", "w:d/b2", "w:mid", "d:deep", "d:deep/x", "f:deep/x/a=a"},
		{"d:d", "f:d/b=b", "f:d/b2=b", "o:deep", "o:deep/x", "f:deep/x/b=b", "w:low", "f:mid=b", "d:dirgone", "w:dirgone/y"},
		{"d:d", "f:d/c=c", "f:d/b2=c", "d:deep", "d:deep/x", "f:deep/x/c=c", "f:deep/c=c", "f:low=c", "d:dirgone", "f:dirgone/y=c", "f:dirgone/z=c"},
	}},
}

// TestStackedLayersMatchLinuxOverlayfs mounts stacks of 2 and 3 layers with
// whiteouts and opaque directories in each marker format and checks that
// the tree is the one Linux overlayfs shows for lowerdir=a:b:c (with the
// OCI markers converted to overlayfs's for the kernel), that d_ino is st_ino
// and inodes are unique, and that no layer changes.
func TestStackedLayersMatchLinuxOverlayfs(t *testing.T) {
	for _, stack := range layerStacks {
		for _, format := range []struct {
			name string
			f    markerFormat
		}{{"overlay", overlayMarkers}, {"user", userMarkers}, {"oci", ociMarkers}} {
			t.Run(stack.name+"/"+format.name, func(t *testing.T) {
				var ours, kernel []string
				for _, entries := range stack.layers {
					o, k := filepath.Join(t.TempDir(), "l"), filepath.Join(t.TempDir(), "k")
					writeLayer(t, o, format.f, entries)
					writeLayer(t, k, overlayMarkers, entries)
					mounttest.GuardLower(t, o)
					ours, kernel = append(ours, o), append(kernel, k)
				}
				want := treeOf(t, kernelLowerOverlay(t, kernel))
				mnt := mounttest.Mount(t, strings.Join(ours, ":"))
				got := treeOf(t, mnt)
				if d := diffLines(want, got); d != "" {
					t.Errorf("tree differs from Linux overlayfs (- kernel, + ours):\n%s", d)
				}
				checkInodes(t, mnt)
			})
		}
	}
}

// diffLines is a small sorted-set diff.
func diffLines(want, got []string) string {
	w, g := map[string]bool{}, map[string]bool{}
	for _, l := range want {
		w[l] = true
	}
	for _, l := range got {
		g[l] = true
	}
	var out []string
	for l := range w {
		if !g[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range g {
		if !w[l] {
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// TestLowerFlagStacksLikeAColonList checks that repeated --lower flags give
// the stack the colon list gives, and that "\:" reaches a directory whose
// name holds a colon.
func TestLowerFlagStacksLikeAColonList(t *testing.T) {
	base := t.TempDir()
	top, bottom := filepath.Join(base, "to:p"), filepath.Join(base, "bottom")
	writeLayer(t, top, ociMarkers, []layerEntry{"f:a=top", "w:b"})
	writeLayer(t, bottom, ociMarkers, []layerEntry{"f:a=bottom", "f:b=bottom", "f:c=bottom"})
	want := []string{". 40755", `a 100644 "top"`, `c 100644 "bottom"`}
	mntFlags := t.TempDir()
	logPath := filepath.Join(t.TempDir(), "daemon.log")
	if out, err := mounttest.Command(t, mounttest.Binary(t), "mount", "--log", logPath, "--lower", top, "--lower", bottom, mntFlags).CombinedOutput(); err != nil {
		t.Fatalf("mount --lower: %v\n%s", err, out)
	}
	t.Cleanup(func() { mounttest.Unmount(t, mntFlags, logPath) })
	escaped := mounttest.Mount(t, strings.ReplaceAll(top, ":", `\:`)+":"+bottom)
	for _, mnt := range []string{mntFlags, escaped} {
		got := treeOf(t, mnt)
		got[0] = ". " + strings.Fields(got[0])[1][len(strings.Fields(got[0])[1])-5:]
		if d := diffLines(want, got); d != "" {
			t.Errorf("%s:\n%s", mnt, d)
		}
	}
}

// TestCopyUpFromEveryLayerKeepsHardLinks writes to files held by the top
// and the bottom layer: each copies up from its own layer, hard links of
// the bottom layer stay one file, and the layers never change.
func TestCopyUpFromEveryLayerKeepsHardLinks(t *testing.T) {
	top, bottom := t.TempDir(), t.TempDir()
	writeLayer(t, top, ociMarkers, []layerEntry{"f:t=top", "d:d", "f:d/t=top"})
	writeLayer(t, bottom, ociMarkers, []layerEntry{"f:b=bottom", "h:b2=b", "d:d", "f:d/b=bottom"})
	mounttest.GuardLower(t, top)
	mounttest.GuardLower(t, bottom)
	for _, access := range []string{"exclusive", "shared"} {
		t.Run(access, func(t *testing.T) {
			mnt := mounttest.Mount(t, top+":"+bottom, "--file-access="+access)
			for _, p := range []string{"t", "b", "d/t", "d/b"} {
				f, err := os.OpenFile(filepath.Join(mnt, p), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				_, err = f.WriteString("+")
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
			for p, want := range map[string]string{"t": "top+", "b": "bottom+", "b2": "bottom+", "d/t": "top+", "d/b": "bottom+"} {
				if b, err := os.ReadFile(filepath.Join(mnt, p)); err != nil || string(b) != want {
					t.Errorf("%s reads %q, %v; want %q", p, b, err, want)
				}
			}
			var s1, s2 unix.Stat_t
			if unix.Lstat(filepath.Join(mnt, "b"), &s1) != nil || unix.Lstat(filepath.Join(mnt, "b2"), &s2) != nil || s1.Ino != s2.Ino || s1.Nlink != 2 {
				t.Errorf("hard links b, b2 after copy-up: ino %d/%d nlink %d, want one file with 2 links", s1.Ino, s2.Ino, s1.Nlink)
			}
		})
	}
}

// TestExportedLayerStacks writes changes on a 2-layer stack, exports them
// with `overlayfs tar`, extracts the tar with plain tar, and checks that
// the extracted layer stacked on top gives the changed tree.
func TestExportedLayerStacks(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("no tar")
	}
	top, bottom := t.TempDir(), t.TempDir()
	writeLayer(t, top, ociMarkers, []layerEntry{"f:t=top", "d:d", "f:d/t=top", "w:gone"})
	writeLayer(t, bottom, ociMarkers, []layerEntry{"f:b=bottom", "f:gone=bottom", "d:d", "f:d/b=bottom", "d:rep", "f:rep/old=bottom", "f:rm=bottom"})
	mounttest.GuardLower(t, top)
	mounttest.GuardLower(t, bottom)
	mnt := mounttest.Mount(t, top+":"+bottom)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(mnt, "d/b"), []byte("changed"), 0o644))
	must(os.Remove(filepath.Join(mnt, "rm")))
	must(os.Remove(filepath.Join(mnt, "d/t")))
	must(os.RemoveAll(filepath.Join(mnt, "rep")))
	must(os.Mkdir(filepath.Join(mnt, "rep"), 0o755))
	must(os.WriteFile(filepath.Join(mnt, "rep/new"), []byte("new"), 0o644))
	want := treeOf(t, mnt)

	tarFile := filepath.Join(t.TempDir(), "layer.tar")
	out, err := mounttest.Command(t, mounttest.Binary(t), "tar", mnt, "-f", tarFile).CombinedOutput()
	if err != nil {
		t.Fatalf("overlayfs tar: %v\n%s", err, out)
	}
	layer := t.TempDir()
	if out, err := exec.Command("tar", "-xf", tarFile, "-C", layer).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
	stacked := mounttest.Mount(t, layer+":"+top+":"+bottom)
	got := treeOf(t, stacked)
	// The root's mode comes from the extracted layer's root.
	want[0], got[0] = ".", "."
	if d := diffLines(want, got); d != "" {
		t.Errorf("the exported layer stacked on its lowers differs from the mount it came from (- mount, + stack):\n%s", d)
	}
}

// TestBottomLayerMarkersHideOnlyThemselves pins what a marker in the
// bottom-most layer means: it hides nothing (nothing lies below) and is
// never shown itself, neither listed nor found by name. (Linux overlayfs
// lists a whiteout in a directory that merges with no other layer, yet
// cannot stat it; we hide it from both.)
func TestBottomLayerMarkersHideOnlyThemselves(t *testing.T) {
	for _, format := range []markerFormat{overlayMarkers, ociMarkers} {
		top, bottom := t.TempDir(), t.TempDir()
		writeLayer(t, top, format, []layerEntry{"f:t=top"})
		writeLayer(t, bottom, format, []layerEntry{"f:b=bottom", "w:x", "d:only", "w:only/y", "o:op", "f:op/z=bottom"})
		for _, lowers := range []string{top + ":" + bottom, bottom} {
			mnt := mounttest.Mount(t, lowers)
			got := treeOf(t, mnt)
			var names []string
			for _, l := range got[1:] {
				names = append(names, strings.Fields(l)[0])
			}
			want := []string{"b", "only", "op", "op/z"}
			if lowers != bottom {
				want = append(want, "t")
			}
			sort.Strings(names)
			if strings.Join(names, " ") != strings.Join(want, " ") {
				t.Errorf("format %d, %s: tree %q, want %q", format, lowers, names, want)
			}
			for _, p := range []string{"x", ".wh.x", "only/y", "only/.wh.y", "op/.wh..wh..opq"} {
				if _, err := os.Lstat(filepath.Join(mnt, p)); !os.IsNotExist(err) {
					t.Errorf("format %d, %s: lstat %s: %v, want ENOENT", format, lowers, p, err)
				}
			}
			if _, err := unix.Lgetxattr(filepath.Join(mnt, "op"), "trusted.overlay.opaque", make([]byte, 8)); err == nil {
				t.Errorf("format %d: the opaque xattr shows through: %v", format, err)
			}
		}
	}
}

// TestRunOnStackedLayers runs a command on a rootfs given as two layers:
// it sees the merged tree (the top layer's whiteout hides a file below),
// its changes are reported relative to the merged tree, and no layer
// changes.
func TestRunOnStackedLayers(t *testing.T) {
	bottom := busyboxRootfs(t)
	top := t.TempDir()
	writeLayer(t, top, ociMarkers, []layerEntry{"d:etc", "f:etc/motd=layered\n", "w:etc/old"})
	mounttest.GuardLower(t, top)
	mounttest.GuardLower(t, bottom)
	out := filepath.Join(t.TempDir(), "changes")
	res := cliRun(t, "run", "--diff-out", out, top+":"+bottom, "--", "sh", "-c",
		"cat /etc/motd; ls /etc; echo new > /etc/keep")
	if res.code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", res.code, res.stderr)
	}
	if want := "layered\nkeep\nmotd\n"; res.stdout != want {
		t.Errorf("stdout %q, want %q", res.stdout, want)
	}
	if got, _ := os.ReadFile(out); string(got) != "C /etc/keep\n" {
		t.Errorf("--diff-out %q, want %q", got, "C /etc/keep\n")
	}
}

// randomStack makes a stack of 1 to 4 layers over a small namespace (four
// names at the root, three below each directory) where every layer gives
// every path at random nothing, a file, a symlink, a directory, an opaque
// directory or a whiteout. Each layer picks its marker format at random.
func randomStack(r *rand.Rand) (layers [][]layerEntry, formats []markerFormat) {
	n := 1 + r.Intn(4)
	for i := 0; i < n; i++ {
		var entries []layerEntry
		for _, top := range []string{"a", "b", "c", "d"} {
			kind := r.Intn(8)
			switch kind {
			case 0, 1:
				continue
			case 2:
				entries = append(entries, fmt.Sprintf("f:%s=%d", top, i))
				continue
			case 3:
				entries = append(entries, fmt.Sprintf("l:%s=t%d", top, i))
				continue
			case 4:
				entries = append(entries, "w:"+top)
				continue
			case 5:
				entries = append(entries, "o:"+top)
			default:
				entries = append(entries, "d:"+top)
			}
			for _, sub := range []string{"x", "y", "z"} {
				p := top + "/" + sub
				switch r.Intn(6) {
				case 0, 1:
				case 2:
					entries = append(entries, fmt.Sprintf("f:%s=%d", p, i))
				case 3:
					entries = append(entries, "w:"+p)
				case 4:
					entries = append(entries, "d:"+p, fmt.Sprintf("f:%s/in=%d", p, i))
				default:
					entries = append(entries, "o:"+p, fmt.Sprintf("f:%s/in=%d", p, i))
				}
			}
		}
		layers = append(layers, entries)
		formats = append(formats, markerFormat(r.Intn(3)))
	}
	return layers, formats
}

// TestRandomStacksMatchLinuxOverlayfs is the differential test over random
// stacks of 1 to 4 layers: each gives the tree Linux overlayfs gives for
// the same layers with overlayfs-format markers.
func TestRandomStacksMatchLinuxOverlayfs(t *testing.T) {
	stacks := 40
	if testing.Short() {
		stacks = 8
	}
	for seed := int64(1); seed <= int64(stacks); seed++ {
		layers, formats := randomStack(rand.New(rand.NewSource(seed)))
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			var ours, kernel []string
			for i, entries := range layers {
				o, k := filepath.Join(t.TempDir(), "l"), filepath.Join(t.TempDir(), "k")
				writeLayer(t, o, formats[i], entries)
				writeLayer(t, k, overlayMarkers, entries)
				ours, kernel = append(ours, o), append(kernel, k)
			}
			want := kernelTreeOf(t, kernelLowerOverlay(t, kernel))
			mnt := mounttest.Mount(t, strings.Join(ours, ":"))
			if d := diffLines(want, treeOf(t, mnt)); d != "" {
				t.Errorf("layers %q (formats %v): tree differs from Linux overlayfs (- kernel, + ours):\n%s", layers, formats, d)
			}
			checkInodes(t, mnt)
			// Lookups without a listing first: lstat every path any
			// layer names, on a fresh mount, as the kernel answers it.
			kmnt, fresh := kernelLowerOverlay(t, kernel), mounttest.Mount(t, strings.Join(ours, ":"))
			for _, p := range layerPaths(layers) {
				if k, o := lstatLine(kmnt, p), lstatLine(fresh, p); k != o {
					t.Errorf("layers %q (formats %v): lstat %s: kernel %q, ours %q", layers, formats, p, k, o)
				}
			}
		})
	}
}

// layerPaths lists every path the layers name, parents first.
func layerPaths(layers [][]layerEntry) []string {
	seen := map[string]bool{}
	var out []string
	for _, entries := range layers {
		for _, e := range entries {
			_, rest, _ := strings.Cut(e, ":")
			p, _, _ := strings.Cut(rest, "=")
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sort.Strings(out)
	return out
}

// lstatLine describes what lstat says of root/p: its mode, or its error.
func lstatLine(root, p string) string {
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("mode %o size %d", st.Mode, st.Size)
}

// TestRenameOfDirectorySpanningLayers renames a directory that spans two layers:
// it keeps the contents of both, the old name is gone, and no layer
// changes.
func TestRenameOfDirectorySpanningLayers(t *testing.T) {
	top, bottom := t.TempDir(), t.TempDir()
	writeLayer(t, top, ociMarkers, []layerEntry{"d:d", "f:d/t=top", "w:d/gone"})
	writeLayer(t, bottom, overlayMarkers, []layerEntry{"d:d", "f:d/b=bottom", "f:d/gone=bottom", "d:d/sub", "f:d/sub/s=bottom"})
	mounttest.GuardLower(t, top)
	mounttest.GuardLower(t, bottom)
	mnt := mounttest.Mount(t, top+":"+bottom)
	if err := os.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "e")); err != nil {
		t.Fatalf("rename of a directory spanning two layers: %v", err)
	}
	want := []string{". 40755", `e 40755`, `e/b 100644 "bottom"`, `e/sub 40755`, `e/sub/s 100644 "bottom"`, `e/t 100644 "top"`}
	got := treeOf(t, mnt)
	got[0] = ". 40755"
	if d := diffLines(want, got); d != "" {
		t.Errorf("after rename d e:\n%s", d)
	}
}

// TestSharedAccessSeesChangesInEveryLayer checks --file-access shared on a
// stack: a file added to the bottom layer from outside shows, and a
// whiteout added to the top layer from outside hides the file below.
func TestSharedAccessSeesChangesInEveryLayer(t *testing.T) {
	top, bottom := t.TempDir(), t.TempDir()
	writeLayer(t, top, ociMarkers, []layerEntry{"d:d", "f:d/t=top"})
	writeLayer(t, bottom, ociMarkers, []layerEntry{"d:d", "f:d/b=bottom"})
	mnt := mounttest.Mount(t, top+":"+bottom, "--file-access=shared")
	names := func() string {
		ents, err := os.ReadDir(filepath.Join(mnt, "d"))
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, e := range ents {
			n = append(n, e.Name())
		}
		sort.Strings(n)
		return strings.Join(n, " ")
	}
	if got := names(); got != "b t" {
		t.Fatalf("d lists %q, want %q", got, "b t")
	}
	if _, err := os.Stat(filepath.Join(mnt, "d/b")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bottom, "d/new"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "d/new")); err != nil || string(b) != "new" {
		t.Errorf("a file added to the bottom layer reads %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(top, "d/.wh.b"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "d/b")); !os.IsNotExist(err) {
		t.Errorf("a file whited out in the top layer from outside: stat %v, want ENOENT", err)
	}
	if got := names(); got != "new t" {
		t.Errorf("d lists %q, want %q", got, "new t")
	}
}

// TestPosixOnThreeLayerStack runs go-fuse's POSIX conformance suite on a
// fresh mount of three empty layers per case, so that every case runs in a
// root merged from three layers.
func TestPosixOnThreeLayerStack(t *testing.T) {
	var cases []string
	for name := range posixtest.All {
		cases = append(cases, name)
	}
	sort.Strings(cases)
	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			if name == "FcntlFlockLocksFile" {
				t.Skip("the case is wrong: POSIX locks of one process never conflict with each other")
			}
			var layers []string
			for i := 0; i < 3; i++ {
				layers = append(layers, t.TempDir())
			}
			mnt := mounttest.Mount(t, strings.Join(layers, ":"))
			posixtest.All[name](t, mnt)
		})
	}
}

// kernelOverlay mounts a writable Linux overlayfs of lowers (top-most
// first) with an upper on a new directory, unmounted at cleanup.
func kernelOverlay(t *testing.T, lowers []string) string {
	t.Helper()
	base := t.TempDir()
	mnt, up, work := filepath.Join(base, "m"), filepath.Join(base, "u"), filepath.Join(base, "w")
	for _, d := range []string{mnt, up, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return mountKernelOverlay(t, mnt, 0, fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,redirect_dir=on,index=on,metacopy=off", strings.Join(lowers, ":"), up, work))
}

// stackOp applies one random change to the tree at root and returns its
// outcome (the error's errno, or "ok").
func stackOp(root, kind, p, q string) string {
	var err error
	full := filepath.Join(root, p)
	switch kind {
	case "rm":
		err = os.RemoveAll(full)
	case "append":
		var f *os.File
		if f, err = os.OpenFile(full, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			_, err = f.WriteString("+")
			f.Close()
		}
	case "mkdir":
		err = os.Mkdir(full, 0o755)
	case "create":
		err = os.WriteFile(full, []byte("new"), 0o644)
	case "rename":
		err = os.Rename(full, filepath.Join(root, q))
	}
	if err == nil {
		return "ok"
	}
	var errno unix.Errno
	for e := err; e != nil; {
		if en, ok := e.(unix.Errno); ok {
			errno = en
			break
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	return errno.Error()
}

// TestRandomChangesOnStacksMatchLinuxOverlayfs applies the same random
// changes (remove, append, mkdir, create, rename) to random stacks of 1 to
// 4 layers on our mount and on a writable Linux overlayfs (redirect_dir on)
// and compares every outcome and the final tree; no layer changes.
func TestRandomChangesOnStacksMatchLinuxOverlayfs(t *testing.T) {
	stacks := 30
	if testing.Short() {
		stacks = 6
	}
	for seed := int64(1); seed <= int64(stacks); seed++ {
		r := rand.New(rand.NewSource(seed))
		layers, formats := randomStack(r)
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			var ours, kernel []string
			for i, entries := range layers {
				o, k := filepath.Join(t.TempDir(), "l"), filepath.Join(t.TempDir(), "k")
				writeLayer(t, o, formats[i], entries)
				writeLayer(t, k, overlayMarkers, entries)
				mounttest.GuardLower(t, o)
				ours, kernel = append(ours, o), append(kernel, k)
			}
			kmnt := kernelOverlay(t, kernel)
			mnt := mounttest.Mount(t, strings.Join(ours, ":"))
			paths := append(layerPaths(layers), "n", "a/n", "b/n")
			var log []string
			for i := 0; i < 12; i++ {
				kind := []string{"rm", "append", "mkdir", "create", "rename"}[r.Intn(5)]
				p, q := paths[r.Intn(len(paths))], paths[r.Intn(len(paths))]
				k, o := stackOp(kmnt, kind, p, q), stackOp(mnt, kind, p, q)
				log = append(log, fmt.Sprintf("%s %s %s: %s", kind, p, q, k))
				if k != o {
					t.Errorf("layers %q (formats %v), after\n%s\nours: %s", layers, formats, strings.Join(log, "\n"), o)
				}
			}
			t.Logf("changes:\n%s", strings.Join(log, "\n"))
			if d := diffLines(kernelTreeOf(t, kmnt), treeOf(t, mnt)); d != "" {
				t.Errorf("layers %q (formats %v), after\n%s\ntree differs from Linux overlayfs (- kernel, + ours):\n%s", layers, formats, strings.Join(log, "\n"), d)
			}
		})
	}
}

// TestLayersOnSeparateFileSystemsNeverShareInodes stacks two fresh tmpfs
// file systems, whose files have the same inode numbers, and checks that
// every file of the merged tree still has an st_ino of its own, equal to
// its d_ino.
func TestLayersOnSeparateFileSystemsNeverShareInodes(t *testing.T) {
	var layers []string
	for i := 0; i < 2; i++ {
		dir := t.TempDir()
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
			t.Skipf("mount tmpfs: %v", err)
		}
		t.Cleanup(func() {
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount tmpfs %s: %v", dir, err)
			}
		})
		writeLayer(t, dir, ociMarkers, []layerEntry{"d:d", fmt.Sprintf("f:d/f%d=%d", i, i), fmt.Sprintf("f:g%d=%d", i, i)})
		layers = append(layers, dir)
	}
	var a, b unix.Stat_t
	if unix.Stat(filepath.Join(layers[0], "d/f0"), &a) != nil || unix.Stat(filepath.Join(layers[1], "d/f1"), &b) != nil {
		t.Fatal("stat the layers")
	}
	if a.Ino != b.Ino {
		t.Logf("the two tmpfs gave d/f0 and d/f1 different inode numbers (%d, %d): the test is weaker", a.Ino, b.Ino)
	}
	mnt := mounttest.Mount(t, strings.Join(layers, ":"))
	checkInodes(t, mnt)
}

// mountKernelOverlay mounts Linux overlayfs with opts on mnt (skipping the
// test where the kernel has none) and unmounts it at cleanup, waiting out a
// short EBUSY.
func mountKernelOverlay(t *testing.T, mnt string, flags uintptr, opts string) string {
	t.Helper()
	if err := unix.Mount("overlay", mnt, "overlay", flags, opts); err != nil {
		t.Skipf("no kernel overlayfs to compare with (mount -o %s: %v)", opts, err)
	}
	t.Cleanup(func() {
		var err error
		for i := 0; i < 40; i++ {
			if err = unix.Unmount(mnt, 0); err != unix.EBUSY {
				break
			}
			runtime.GC()
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("unmount kernel overlay %s: %v", mnt, err)
		}
	})
	return mnt
}
