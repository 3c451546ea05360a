package fuseuring

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// stallFS is memfs whose GETATTR on a file named "stall" waits until
// released: a request held in flight by the server.
type stallFS struct {
	*memFS
	stallIno atomic.Uint64
	entered  chan struct{}
	release  chan struct{}
}

func (s *stallFS) GetAttr(c <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.NodeId == s.stallIno.Load() {
		s.entered <- struct{}{}
		<-s.release
	}
	return s.memFS.GetAttr(c, in, out)
}

// TestUnmountWithRequestInFlight detaches the mount while the server holds
// a request; the caller must get its answer when the server answers, and
// the server must end once the last user is gone.
func TestUnmountWithRequestInFlight(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr.String(), func(t *testing.T) {
			fsys := &stallFS{memFS: newMemFS(memFSOptions{}), entered: make(chan struct{}, 1), release: make(chan struct{})}
			mnt, s := mountMem(t, tr, fsys)
			p := filepath.Join(mnt, "stall")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			var st unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &st); err != nil {
				t.Fatal(err)
			}
			fsys.stallIno.Store(st.Ino)
			got := make(chan error, 1)
			go func() {
				var st unix.Stat_t
				got <- unix.Fstat(int(f.Fd()), &st)
			}()
			select {
			case <-fsys.entered:
			case <-time.After(10 * time.Second):
				t.Fatal("GETATTR never reached the server")
			}
			if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			close(fsys.release)
			select {
			case err := <-got:
				if err != nil {
					t.Errorf("in-flight fstat: %v, want its answer", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("in-flight fstat never returned")
			}
			f.Close()
			done := make(chan error, 1)
			go func() { done <- s.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("server: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("server did not end after the last user left")
			}
		})
	}
}

// TestDaemonDeathWithRequestInFlight kills a stopped server process while
// a request waits for it: the caller must get ENOTCONN, not hang, and the
// mount must come off.
func TestDaemonDeathWithRequestInFlight(t *testing.T) {
	for _, tr := range []string{"dev", "uring"} {
		t.Run(tr, func(t *testing.T) {
			if tr == "uring" {
				requireURing(t)
			} else if os.Geteuid() != 0 {
				t.Skip("needs root to mount /dev/fuse directly")
			}
			mnt := t.TempDir()
			p := startServer(t, tr, mnt, 0, 1)
			f, err := os.Create(filepath.Join(mnt, "probe"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close() // closing twice is harmless; this covers early failures
			if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			waitStopped(t, p.cmd.Process.Pid)
			got := make(chan error, 1)
			tid := make(chan int, 1)
			go func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				tid <- unix.Gettid()
				var st unix.Stat_t
				got <- unix.Fstat(int(f.Fd()), &st)
			}()
			waitInFUSE(t, <-tid, got)
			if err := p.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-got:
				// /dev/fuse fails it with ENOTCONN or ECONNABORTED; a
				// request already handed to a dying ring thread comes back
				// ECANCELED (fs/fuse/dev_uring.c, IO_URING_F_TASK_DEAD).
				if !errors.Is(err, unix.ENOTCONN) && !errors.Is(err, unix.ECONNABORTED) && !errors.Is(err, unix.ECANCELED) {
					t.Errorf("fstat after daemon death: %v, want ENOTCONN, ECONNABORTED or ECANCELED", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("fstat hangs after the daemon died")
			}
			f.Close()
			if err := unix.Unmount(mnt, 0); err != nil {
				t.Errorf("unmount after death: %v", err)
			}
		})
	}
}

// TestURingOffSaysWhy: with the kernel switch off, asking for io_uring
// fails before mounting and names the switch.
func TestURingOffSaysWhy(t *testing.T) {
	switchURingOff(t)
	mnt := t.TempDir()
	s, err := Mount(newMemFS(memFSOptions{}), mnt, Options{Transport: IOURing})
	if err == nil {
		s.Unmount()
		t.Fatal("Mount with io_uring switched off succeeded")
	}
	if !strings.Contains(err.Error(), "enable_uring") {
		t.Errorf("error %q does not name the switch", err)
	}
	if isMountPoint(t, mnt) {
		t.Errorf("a failed Mount left %s mounted", mnt)
	}
}

func isMountPoint(t *testing.T, p string) bool {
	t.Helper()
	var st, parent unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(filepath.Dir(p), &parent); err != nil {
		t.Fatal(err)
	}
	return st.Dev != parent.Dev
}

// TestModes: what --fuse-uring auto|on|off does with the kernel switch
// off and on.
func TestModes(t *testing.T) {
	for _, c := range []struct {
		arg     string
		enabled bool
		want    Transport
		wantErr bool
	}{
		{"off", true, DevFuse, false},
		{"auto", true, IOURing, false},
		{"on", true, IOURing, false},
		{"auto", false, DevFuse, false},
		{"on", false, DevFuse, true},
	} {
		name := c.arg + "/switch-off"
		if c.enabled {
			name = c.arg + "/switch-on"
		}
		t.Run(name, func(t *testing.T) {
			if c.enabled {
				requireURing(t)
			} else {
				switchURingOff(t)
			}
			mode, err := ParseMode(c.arg)
			if err != nil {
				t.Fatal(err)
			}
			backing, mnt := t.TempDir(), t.TempDir()
			root, err := gofs.NewLoopbackRoot(backing)
			if err != nil {
				t.Fatal(err)
			}
			m, err := NewServer(gofs.NewNodeFS(root, nil), mnt, &fuse.MountOptions{Name: "loopback"}, mode)
			if c.wantErr {
				if err == nil {
					m.Unmount()
					t.Fatal("mounted without io_uring")
				}
				if !strings.Contains(err.Error(), "enable_uring") {
					t.Errorf("error %q does not name the switch", err)
				}
				if isMountPoint(t, mnt) {
					t.Errorf("failed mount left %s mounted", mnt)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := m.Unmount(); err != nil {
					t.Error(err)
				}
			}()
			if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if m.Transport() != c.want {
				t.Errorf("transport %v, want %v", m.Transport(), c.want)
			}
			if c.want == DevFuse && c.arg == "auto" && !strings.Contains(m.Reason(), "enable_uring") {
				t.Errorf("auto without io_uring says %q, not which switch is off", m.Reason())
			}
			if got := m.Stats().Ring > 0; got != (c.want == IOURing) {
				t.Errorf("ring carried %d requests with transport %v", m.Stats().Ring, c.want)
			}
		})
	}
	if _, err := ParseMode("sometimes"); err == nil {
		t.Error("ParseMode accepted sometimes")
	}
}

// waitInFUSE waits (bounded) until thread tid sleeps waiting for a FUSE
// answer, failing if the call returns first.
func waitInFUSE(t *testing.T, tid int, got <-chan error) {
	t.Helper()
	wchan := filepath.Join("/proc/self/task", strconv.Itoa(tid), "wchan")
	deadline := time.Now().Add(10 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case err := <-got:
			t.Fatalf("call answered by a stopped server: %v", err)
		default:
		}
		b, _ := os.ReadFile(wchan)
		last = string(b)
		if strings.Contains(last, "request_wait_answer") || strings.Contains(last, "fuse") {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("thread %d never waited for FUSE (wchan %q)", tid, last)
}

// waitStopped waits (bounded) until every thread of process pid is stopped.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "stat"))
		if err != nil || len(tasks) == 0 {
			t.Fatalf("threads of %d: %v", pid, err)
		}
		stopped := 0
		for _, task := range tasks {
			b, _ := os.ReadFile(task)
			// The state follows the parenthesised command name.
			if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't') {
				stopped++
			}
		}
		if stopped == len(tasks) {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("process %d did not stop within 10 s", pid)
}

// TestAutoFallsBackWhenRegisterFails: in auto mode, rings whose REGISTER
// the kernel refuses (here: payload buffers smaller than the connection's
// max_write, EINVAL) leave the mount on /dev/fuse, served by go-fuse, with
// the reason, instead of failing it; in on mode the mount fails.
func TestAutoFallsBackWhenRegisterFails(t *testing.T) {
	for _, mode := range []Mode{Auto, On} {
		t.Run(mode.String(), func(t *testing.T) {
			requireURing(t)
			mnt := t.TempDir()
			m, err := newServer2(loopbackOf(t, "f", "data"), mnt,
				&fuse.MountOptions{Name: "loopback", MaxBackground: 12, DirectMount: true}, ServeOptions{Mode: mode},
				func(s *Server) { s.maxWrite = 4096 })
			if mode == On {
				if err == nil {
					m.Unmount()
					t.Fatal("on mode mounted although no ring could register")
				}
				if isMountPoint(t, mnt) {
					unix.Unmount(mnt, unix.MNT_DETACH)
					t.Error("failed mount left its mount point mounted")
				}
				return
			}
			if err != nil {
				t.Fatalf("auto mode failed the mount when REGISTER failed: %v", err)
			}
			t.Cleanup(func() {
				if err := m.Unmount(); err != nil {
					t.Errorf("unmount: %v", err)
				}
			})
			if m.Transport() != DevFuse || !strings.Contains(m.Reason(), "REGISTER") {
				t.Errorf("transport %v, reason %q; want /dev/fuse with the REGISTER failure as reason", m.Transport(), m.Reason())
			}
			if b, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(b) != "data" {
				t.Errorf("read through the fallen-back mount: %q, %v", b, err)
			}
		})
	}
}
