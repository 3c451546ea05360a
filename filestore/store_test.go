package filestore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"overlayfs/memfile"
)

// helperEnv makes the test binary act as a store-opening child process.
const helperEnv = "FILESTORE_TEST_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(helperMain(spec))
	}
	os.Exit(m.Run())
}

// helperMain opens a store, writes to it, reports "ready" and waits to be
// killed.
func helperMain(spec string) int {
	s, err := Parse(spec)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	st, err := Open(s, OpenOptions{
		LowerRoot: os.Getenv("FILESTORE_LOWER"),
		ID:        "child",
		NoTmpfile: os.Getenv("FILESTORE_NOTMPFILE") != "",
	})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	if _, err := st.File.WriteAt(bytes.Repeat([]byte("x"), 1<<20), 0); err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("ready")
	select {}
}

// openStore opens spec and closes the store at the end of the test.
func openStore(t *testing.T, spec string, opts OpenOptions) *Store {
	t.Helper()
	s, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Open(s, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", spec, err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

// fdTarget returns the /proc/self/fd link of f.
func fdTarget(t *testing.T, f *os.File) string {
	t.Helper()
	target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// checkUsable checks f is a read-write, close-on-exec file.
func checkUsable(t *testing.T, f *os.File) {
	t.Helper()
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("fd flags %#x, %v: want close-on-exec", flags, err)
	}
	if _, err := f.WriteAt([]byte("data"), 4096); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := f.ReadAt(buf, 4096); err != nil || string(buf) != "data" {
		t.Fatalf("read back %q, %v", buf, err)
	}
}

// dirEntries lists dir's names.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestOpenMemory(t *testing.T) {
	st := openStore(t, "root:memory", OpenOptions{})
	if target := fdTarget(t, st.File); !strings.HasPrefix(target, "/memfd:") {
		t.Fatalf("memory store is %q, want a memfd", target)
	}
	if st.Path != "" {
		t.Fatalf("memory store has a path %q", st.Path)
	}
	checkUsable(t, st.File)
}

func TestOpenDir(t *testing.T) {
	for _, c := range []struct {
		name      string
		noTmpfile bool
		wantName  string // how /proc shows the unlinked file
	}{
		{"O_TMPFILE", false, "#"},
		{"create+unlink", true, "overlayfs-filestore-"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			st := openStore(t, "root:dir="+dir, OpenOptions{NoTmpfile: c.noTmpfile})
			target := fdTarget(t, st.File)
			if !strings.HasPrefix(target, dir+"/"+c.wantName) || !strings.HasSuffix(target, " (deleted)") {
				t.Fatalf("store file is %q, want an unlinked %s* in %s", target, c.wantName, dir)
			}
			if names := dirEntries(t, dir); len(names) != 0 {
				t.Fatalf("directory holds %v, want nothing", names)
			}
			checkUsable(t, st.File)
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		spec Spec
		opts OpenOptions
		want string
	}{
		{"none", Spec{}, OpenOptions{}, "has no backing file"},
		{"missing dir", Spec{Mount: "root", Medium: MediumDir, Dir: dir + "/nope"}, OpenOptions{}, "overlay2 flag should specify an existing directory"},
		{"dir is a file", Spec{Mount: "root", Medium: MediumDir, Dir: file}, OpenOptions{}, "overlay2 flag should specify an existing directory"},
		{"relative dir", Spec{Mount: "root", Medium: MediumDir, Dir: "rel"}, OpenOptions{}, "should be an absolute path"},
		{"self without root", Spec{Mount: "root", Medium: MediumSelf}, OpenOptions{ID: "x"}, "absolute lower root"},
		{"self without id", Spec{Mount: "root", Medium: MediumSelf}, OpenOptions{LowerRoot: dir}, "invalid filestore id"},
		{"self id with slash", Spec{Mount: "root", Medium: MediumSelf}, OpenOptions{LowerRoot: dir, ID: "../x"}, "invalid filestore id"},
		{"self missing root", Spec{Mount: "root", Medium: MediumSelf}, OpenOptions{LowerRoot: dir + "/nope", ID: "x"}, "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := Open(c.spec, c.opts)
			if err == nil {
				st.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Fatalf("failed opens left %v", names)
	}
}

func TestOpenSelf(t *testing.T) {
	lower := t.TempDir()
	st := openStore(t, "root:self", OpenOptions{LowerRoot: lower, ID: "abc"})
	want := filepath.Join(lower, SelfPrefix+"abc")
	if st.Path != want {
		t.Fatalf("Path = %q, want %q", st.Path, want)
	}
	fi, err := os.Lstat(want)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("self file: %v, %v", fi, err)
	}
	if !IsSelfName(filepath.Base(want)) || IsSelfName("abc") || IsSelfName(SelfPrefix) {
		t.Fatal("IsSelfName disagrees with the file name")
	}
	checkUsable(t, st.File)
	if _, err := Open(st.Spec, OpenOptions{LowerRoot: lower, ID: "abc"}); !errors.Is(err, unix.EEXIST) ||
		!strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second open of the same id: %v, want a clear EEXIST", err)
	}
	// Nothing alive owns it per RemoveStale: we do.
	if removed, err := RemoveStale(lower); err != nil || len(removed) != 0 {
		t.Fatalf("RemoveStale removed a live store: %v, %v", removed, err)
	}
	// memfile takes ownership of the fd; Close must still remove the file.
	m, err := memfile.New(st.File, memfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if names := dirEntries(t, lower); len(names) != 0 {
		t.Fatalf("lower root holds %v after Close", names)
	}
}

// startHelper runs the test binary as a child that opens spec and signals
// readiness; it returns the running command.
func startHelper(t *testing.T, spec string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, helperEnv+"="+spec)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	return cmd
}

// killHelper SIGKILLs the child and reaps it.
func killHelper(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}

func TestDirLeavesNothingAfterSIGKILL(t *testing.T) {
	for _, noTmpfile := range []string{"", "1"} {
		t.Run("notmpfile="+noTmpfile, func(t *testing.T) {
			dir := t.TempDir()
			cmd := startHelper(t, "root:dir="+dir, "FILESTORE_NOTMPFILE="+noTmpfile)
			killHelper(t, cmd)
			if names := dirEntries(t, dir); len(names) != 0 {
				t.Fatalf("SIGKILLed owner left %v", names)
			}
		})
	}
}

func TestRemoveStaleAfterSIGKILL(t *testing.T) {
	lower := t.TempDir()
	cmd := startHelper(t, "root:self", "FILESTORE_LOWER="+lower)
	pid := cmd.Process.Pid
	path := filepath.Join(lower, SelfPrefix+"child")
	buf := make([]byte, 64)
	n, err := unix.Getxattr(path, OwnerXattr, buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), strconv.Itoa(pid)+" ") {
		t.Fatalf("owner tag %q, %v; want pid %d", buf[:max(n, 0)], err, pid)
	}
	if removed, err := RemoveStale(lower); err != nil || len(removed) != 0 {
		t.Fatalf("RemoveStale with the owner alive removed %v, %v", removed, err)
	}
	killHelper(t, cmd)
	// Unrelated files and untagged stores are never touched.
	other := filepath.Join(lower, "keep")
	untagged := filepath.Join(lower, SelfPrefix+"untagged")
	for _, p := range []string{other, untagged} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := RemoveStale(lower)
	if err != nil || len(removed) != 1 || removed[0] != path {
		t.Fatalf("RemoveStale = %v, %v; want [%s]", removed, err, path)
	}
	names := dirEntries(t, lower)
	if len(names) != 2 {
		t.Fatalf("after RemoveStale: %v", names)
	}
}

// TestSizeLimitENOSPC uses size= as the memfile budget: the write past it
// fails with ENOSPC and everything written before stays.
func TestSizeLimitENOSPC(t *testing.T) {
	for _, spec := range []string{"root:memory,size=1m", "root:dir=" + t.TempDir() + ",size=1m"} {
		t.Run(spec, func(t *testing.T) {
			st := openStore(t, spec, OpenOptions{})
			limit, err := st.Spec.SizeBytes()
			if err != nil {
				t.Fatal(err)
			}
			dup, err := unix.Dup(int(st.File.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			m, err := memfile.New(os.NewFile(uintptr(dup), "store"), memfile.Options{Limit: limit})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			var d memfile.Data
			chunk := bytes.Repeat([]byte("y"), 256<<10)
			var off int64
			for i := 0; i < 4; i++ {
				n, err := d.WriteAt(m, chunk, off)
				if err != nil || n != len(chunk) {
					t.Fatalf("write %d within the budget: %d, %v", i, n, err)
				}
				off += int64(n)
			}
			if n, err := d.WriteAt(m, []byte("z"), off); !errors.Is(err, unix.ENOSPC) || n != 0 {
				t.Fatalf("write past size=1m: %d, %v; want ENOSPC", n, err)
			}
			got := make([]byte, off)
			if _, err := d.ReadAt(m, got, 0); err != nil || !bytes.Equal(got, bytes.Repeat(chunk, 4)) {
				t.Fatalf("data before the failed write changed (%v)", err)
			}
		})
	}
}

// rootTimes returns dir's atime and mtime.
func rootTimes(t *testing.T, dir string) [2]unix.Timespec {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return [2]unix.Timespec{st.Atim, st.Mtim}
}

// TestSelfKeepsLowerRootTimes checks that creating and removing a self
// filestore (by Close, or by RemoveStale after its owner died) leaves the
// lower root's atime and mtime as they were.
func TestSelfKeepsLowerRootTimes(t *testing.T) {
	old := [2]unix.Timespec{{Sec: 1_000_000_000}, {Sec: 1_000_000_000, Nsec: 123}}
	t.Run("Open and Close", func(t *testing.T) {
		lower := t.TempDir()
		if err := unix.UtimesNano(lower, old[:]); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Spec{Mount: "root", Medium: MediumSelf}, OpenOptions{LowerRoot: lower, ID: "times"})
		if err != nil {
			t.Fatal(err)
		}
		if got := rootTimes(t, lower); got != old {
			t.Errorf("with the filestore open the root's times are %v, want %v", got, old)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if got := rootTimes(t, lower); got != old {
			t.Errorf("after Close the root's times are %v, want %v", got, old)
		}
	})
	t.Run("RemoveStale", func(t *testing.T) {
		lower := t.TempDir()
		cmd := startHelper(t, "root:self", "FILESTORE_LOWER="+lower)
		killHelper(t, cmd)
		if err := unix.UtimesNano(lower, old[:]); err != nil {
			t.Fatal(err)
		}
		if removed, err := RemoveStale(lower); err != nil || len(removed) != 1 {
			t.Fatalf("RemoveStale = %v, %v", removed, err)
		}
		if got := rootTimes(t, lower); got != old {
			t.Errorf("after RemoveStale the root's times are %v, want %v", got, old)
		}
	})
	t.Run("a change by someone else stands", func(t *testing.T) {
		lower := t.TempDir()
		if err := unix.UtimesNano(lower, old[:]); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Spec{Mount: "root", Medium: MediumSelf}, OpenOptions{LowerRoot: lower, ID: "times"})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(lower, "theirs"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if got := rootTimes(t, lower); got[1] == old[1] {
			t.Errorf("Close set the root's mtime back over another writer's change")
		}
	})
}
