package overlay_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/internal/mounttest"
)

// childEnv names the role of a re-executed test binary (see runChild).
const childEnv = "OVERLAYFS_TEST_CHILD"

// TestMain runs the tests, or one child role when the test binary is
// re-executed by a test that needs a second process.
func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role, os.Args[1:]))
	}
	os.Exit(mounttest.Main(m))
}

// mountDeadline bounds a whole mounted subtest. When it passes, the daemon
// is killed so that every call still hung on the mount returns ENOTCONN and
// the test fails instead of hanging.
const mountDeadline = 90 * time.Second

// medium is one --overlay2 medium every semantic test runs against.
type medium struct {
	name string
	self bool // the filestore lives in the lower root
	spec func(t *testing.T) string
}

func media() []medium {
	return []medium{
		{name: "memory", spec: func(*testing.T) string { return "root:memory" }},
		{name: "dir", spec: func(t *testing.T) string { return "root:dir=" + t.TempDir() }},
		{name: "self", self: true, spec: func(*testing.T) string { return "root:self" }},
		perFileMedium,
	}
}

// perFileMedium keeps each upper file's data in a host file of its own,
// opened by the kernel with FUSE passthrough (backing=file).
var perFileMedium = medium{name: "memory-file", spec: func(*testing.T) string { return "root:memory,backing=file" }}

// forEachMedium runs body as one subtest per medium.
func forEachMedium(t *testing.T, body func(t *testing.T, m medium)) {
	t.Helper()
	for _, m := range media() {
		t.Run(m.name, func(t *testing.T) { body(t, m) })
	}
}

// fixture is a mounted overlay over a lower built by the test.
type fixture struct {
	lower, mnt string
}

// path joins names below the mountpoint.
func (f *fixture) path(names ...string) string {
	return filepath.Join(append([]string{f.mnt}, names...)...)
}

// lowerPath joins names below the lower directory.
func (f *fixture) lowerPath(names ...string) string {
	return filepath.Join(append([]string{f.lower}, names...)...)
}

// setup builds a fresh lower with build (nil: empty), guards it, and mounts
// an overlay of it on medium m, served by this test process. specSuffix is
// appended to the --overlay2 value (",size=8m").
func setup(t *testing.T, m medium, build func(t *testing.T, lower string), specSuffix string) *fixture {
	t.Helper()
	return setupMount(t, m, build, specSuffix, true)
}

// setupDaemon is setup with the mount served by a daemon process (the
// binary), for tests that mmap files of the mount (see
// mounttest.InProcess).
func setupDaemon(t *testing.T, m medium, build func(t *testing.T, lower string), specSuffix string) *fixture {
	t.Helper()
	return setupMount(t, m, build, specSuffix, false)
}

func setupMount(t *testing.T, m medium, build func(t *testing.T, lower string), specSuffix string, inProcess bool) *fixture {
	t.Helper()
	lower := t.TempDir()
	if build != nil {
		build(t, lower)
	}
	guardLower(t, lower, m.self)
	var mnt string
	var abort func()
	if inProcess {
		mnt, abort = mounttest.InProcess(t, lower, m.spec(t)+specSuffix)
	} else {
		mnt = mounttest.Mount(t, lower, "--overlay2", m.spec(t)+specSuffix)
	}
	watchdog(t, mnt, abort)
	return &fixture{lower: lower, mnt: mnt}
}

var mtimeField = regexp.MustCompile(`mtime=\S+ `)

// guardLower is mounttest.GuardLower, except that for the self medium the
// lower root's own mtime may change: the filestore file is created and
// removed there.
func guardLower(t *testing.T, lower string, self bool) {
	t.Helper()
	if !self {
		mounttest.GuardLower(t, lower)
		return
	}
	strip := func(s mounttest.Snapshot) mounttest.Snapshot {
		c := mounttest.Snapshot{}
		for k, v := range s {
			if k == "." {
				v = mtimeField.ReplaceAllString(v, "")
			}
			c[k] = v
		}
		return c
	}
	before := strip(mounttest.Hash(t, lower))
	t.Cleanup(func() {
		if d := before.Diff(strip(mounttest.Hash(t, lower))); len(d) > 0 {
			t.Errorf("the lower directory changed:\n  %s", strings.Join(d, "\n  "))
		}
	})
}

// watchdog fails the test and kills the mount's daemon (or, for a mount
// served in process, calls abort) if the test has not finished within
// mountDeadline, so that a hung FUSE call cannot hang the test binary.
func watchdog(t *testing.T, mnt string, abort func()) {
	t.Helper()
	var mu sync.Mutex
	finished := false
	timer := time.AfterFunc(mountDeadline, func() {
		mu.Lock()
		defer mu.Unlock()
		if finished {
			return
		}
		t.Errorf("watchdog: still running after %v; killing the daemon of %s so that hung calls return", mountDeadline, mnt)
		for _, pid := range daemonPids(mnt) {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		if abort != nil {
			abort()
		}
	})
	t.Cleanup(func() {
		mu.Lock()
		finished = true
		mu.Unlock()
		timer.Stop()
	})
}

// daemonPids finds the overlayfs daemons serving mnt from /proc.
func daemonPids(mnt string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 2 && args[1] == "mount" && args[len(args)-1] == mnt {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mustWrite creates (or truncates) a file with the given content.
func mustWrite(t *testing.T, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
}

func mustMkdir(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(p, mode); err != nil {
		t.Fatalf("mkdir %s: %v", p, err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatalf("chmod %s: %v", p, err)
	}
}

// wantContent fails the test unless p holds want.
func wantContent(t *testing.T, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("read %s: %v", p, err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", p, trunc(got), trunc(want))
	}
}

func trunc(b []byte) string {
	if len(b) > 64 {
		return fmt.Sprintf("%s... (%d bytes)", b[:64], len(b))
	}
	return string(b)
}

// lstat returns the attributes of p or fails the test.
func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

// wantErrno fails the test unless err is the errno want.
func wantErrno(t *testing.T, what string, err error, want unix.Errno) {
	t.Helper()
	if want == 0 {
		if err != nil {
			t.Errorf("%s: %v, want success", what, err)
		}
		return
	}
	var got unix.Errno
	if !errors.As(err, &got) {
		t.Errorf("%s: got %v, want %v (%s)", what, err, want, unix.ErrnoName(want))
		return
	}
	if got != want {
		t.Errorf("%s: got %v (%s), want %v (%s)", what, got, unix.ErrnoName(got), want, unix.ErrnoName(want))
	}
}

// dirent is one entry of a getdents listing.
type dirent struct {
	ino uint64
	typ uint8
}

// readDirents lists a directory with getdents64 and a small buffer, so that
// the listing spans several READDIR calls, and fails on a duplicate name.
func readDirents(t *testing.T, dir string) map[string]dirent {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	defer unix.Close(fd)
	out := map[string]dirent{}
	buf := make([]byte, 512)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatalf("getdents %s: %v", dir, err)
		}
		if n == 0 {
			return out
		}
		for b := buf[:n]; len(b) > 0; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			ino := leUint64(b[0:8])
			reclen := int(b[16]) | int(b[17])<<8
			typ := b[18]
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			s := string(name)
			if _, dup := out[s]; dup {
				t.Errorf("readdir %s lists %q twice", dir, s)
			}
			out[s] = dirent{ino: ino, typ: typ}
			b = b[reclen:]
		}
	}
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// names lists a directory's names without "." and "..".
func names(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for n := range readDirents(t, dir) {
		if n != "." && n != ".." {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// child runs the test binary again in a role of runChild, as uid/gid when
// cred is set, and returns its combined output.
func child(t *testing.T, cred *syscall.Credential, role string, args ...string) (string, error) {
	t.Helper()
	bin := os.Args[0]
	if cred != nil {
		bin = publicBinary(t)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), childEnv+"="+role)
	cmd.Dir = "/"
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child %s: %v", role, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return strings.TrimSpace(out.String()), err
	case <-time.After(mountDeadline):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("child %s %v hung; killed it", role, args)
		return "", nil
	}
}

// publicBinary copies the test binary where any user may run it (the go
// test build directory is private to root).
func publicBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "overlayfs-test-child-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "child.test")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// runChild is the body of a re-executed test binary. Roles:
//
//	create DIR: create DIR/file and DIR/subdir
//	trylock FILE: try to take the POSIX and flock locks of FILE; print what happened
func runChild(role string, args []string) int {
	fail := func(err error) int {
		fmt.Println(err)
		return 1
	}
	switch role {
	case "create":
		if len(args) != 1 {
			return fail(fmt.Errorf("create: need DIR"))
		}
		if err := os.WriteFile(filepath.Join(args[0], "file"), []byte("child"), 0o644); err != nil {
			return fail(err)
		}
		if err := os.Mkdir(filepath.Join(args[0], "subdir"), 0o755); err != nil {
			return fail(err)
		}
		return 0
	case "trylock":
		if len(args) != 1 {
			return fail(fmt.Errorf("trylock: need FILE"))
		}
		fd, err := unix.Open(args[0], unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail(err)
		}
		defer unix.Close(fd)
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
		setErr := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &lk)
		get := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
		getErr := unix.FcntlFlock(uintptr(fd), unix.F_GETLK, &get)
		flockErr := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		fmt.Printf("setlk=%s getlk=%s type=%d pid=%d flock=%s\n",
			errName(setErr), errName(getErr), get.Type, get.Pid, errName(flockErr))
		return 0
	}
	return fail(fmt.Errorf("unknown child role %q", role))
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	return err.Error()
}
