package daemon_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
	"overlayfs/daemon"
	"overlayfs/filestore"
	"overlayfs/internal/ctlsocksrv"
	"overlayfs/internal/fuseuring"
	"overlayfs/internal/mounttest"
)

// start mounts lower with spec in this process and registers the unmount.
func start(t testing.TB, lower, spec string) (daemon.Daemon, string) {
	t.Helper()
	return startWith(t, lower, spec, nil)
}

// startWith is start with edit applied to the daemon's configuration
// before it starts (nil: none).
func startWith(t testing.TB, lower, spec string, edit func(*daemon.Config)) (daemon.Daemon, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts with mount(2)")
	}
	var sp filestore.Spec
	if err := sp.Set(spec); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	cfg := daemon.Config{LowerDir: lower, Mountpoint: mnt, Spec: sp, Gofer: mounttest.InProcessGofer(t, lower), Logf: t.Logf, NoDirectFS: mounttest.NoDirectFS()}
	if edit != nil {
		edit(&cfg)
	}
	d, err := daemon.Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Unmount(); err != nil {
			t.Errorf("unmount %s: %v; detaching", mnt, err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
		d.Wait()
		d.Close()
	})
	return d, mnt
}

func writeLower(t *testing.T) string {
	t.Helper()
	lower := t.TempDir()
	if err := os.WriteFile(filepath.Join(lower, "f"), []byte("lower"), 0o644); err != nil {
		t.Fatal(err)
	}
	return lower
}

// TestOverlayInProcess mounts an overlay in the test process: changes land
// in the upper layer, which the daemon reports; the lower stays as it was.
func TestOverlayInProcess(t *testing.T) {
	lower := writeLower(t)
	d, mnt := start(t, lower, "root:memory")
	if _, ok := d.(*daemon.Overlay); !ok {
		t.Fatalf("root:memory gave a %T, want *daemon.Overlay", d)
	}
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("upper"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(lower, "f")); string(b) != "lower" {
		t.Errorf("the lower changed: %q", b)
	}
	ch, err := d.Changes()
	if err != nil || len(ch) != 2 || ch[0] != (ctlsock.Change{Kind: "C", Path: "/f"}) || ch[1] != (ctlsock.Change{Kind: "A", Path: "/new"}) {
		t.Errorf("Changes = %v, %v", ch, err)
	}
	st := d.Stats()
	if st.UpperFiles != 2 || st.Mountpoint != mnt || st.GoferRoundTrips == 0 || st.Upper != "root:memory" {
		t.Errorf("Stats = %+v", st)
	}
	var tar bytes.Buffer
	if err := d.ExportTar(&tar); err != nil || !bytes.Contains(tar.Bytes(), []byte("upper")) {
		t.Errorf("ExportTar: %d bytes, %v", tar.Len(), err)
	}
}

// TestWriteThroughInProcess mounts --overlay2=none in the test process:
// changes reach the lower, and there is no upper layer to report.
func TestWriteThroughInProcess(t *testing.T) {
	lower := writeLower(t)
	d, mnt := start(t, lower, "none")
	if _, ok := d.(*daemon.WriteThrough); !ok {
		t.Fatalf("none gave a %T, want *daemon.WriteThrough", d)
	}
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(lower, "f")); string(b) != "changed" {
		t.Errorf("the write did not reach the lower: %q", b)
	}
	if _, err := d.Changes(); !errors.Is(err, ctlsocksrv.ErrNoUpper) {
		t.Errorf("Changes: %v, want ErrNoUpper", err)
	}
	if err := d.ExportTar(&bytes.Buffer{}); !errors.Is(err, ctlsocksrv.ErrNoUpper) {
		t.Errorf("ExportTar: %v, want ErrNoUpper", err)
	}
	if st := d.Stats(); st.GoferRoundTrips == 0 || st.Upper != "none" {
		t.Errorf("Stats = %+v", st)
	}
}

// TestStartFailures: a failed start reports why and leaves nothing mounted.
func TestStartFailures(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts with mount(2)")
	}
	lower := writeLower(t)
	var sp filestore.Spec
	if err := sp.Set("root:memory"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  daemon.Config
	}{
		{"no gofer", daemon.Config{LowerDir: lower, Spec: sp}},
		{"gofer fails", daemon.Config{LowerDir: lower, Spec: sp, Gofer: func(bool) (int, func(), error) { return -1, nil, errors.New("no gofer today") }}},
		{"missing upper tar", daemon.Config{LowerDir: lower, Spec: sp, UpperTar: "/nonexistent.tar", Gofer: mounttest.InProcessGofer(t, lower)}},
		{"mountpoint missing", daemon.Config{LowerDir: lower, Spec: sp, Gofer: mounttest.InProcessGofer(t, lower)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mnt := t.TempDir()
			tc.cfg.Mountpoint = mnt
			if tc.name == "mountpoint missing" {
				tc.cfg.Mountpoint = filepath.Join(mnt, "absent")
			}
			tc.cfg.Logf = t.Logf
			if d, err := daemon.Start(tc.cfg); err == nil {
				d.Unmount()
				d.Wait()
				d.Close()
				t.Fatalf("Start succeeded")
			}
			var st, parent unix.Stat_t
			if unix.Stat(mnt, &st) == nil && unix.Stat(filepath.Dir(mnt), &parent) == nil && st.Dev != parent.Dev {
				t.Errorf("%s is mounted after a failed start", mnt)
			}
		})
	}
}

// TestTransportStringNamesKindAndReason: the mount message names the
// transport, and why not io_uring when the kernel did not offer it.
func TestTransportStringNamesKindAndReason(t *testing.T) {
	for _, tc := range []struct {
		t    daemon.Transport
		want string
	}{
		{daemon.Transport{Kind: fuseuring.IOURing}, "io_uring"},
		{daemon.Transport{Kind: fuseuring.DevFuse}, "/dev/fuse"},
		{daemon.Transport{Kind: fuseuring.DevFuse, Reason: "the switch is off"}, "/dev/fuse; io_uring not used: the switch is off"},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.t, got, tc.want)
		}
	}
}
