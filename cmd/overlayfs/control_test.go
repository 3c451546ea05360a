package main

// End-to-end tests of stats and of the control commands' errors.

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
	"overlayfs/internal/mounttest"
)

// TestStatsReportsUpperUsageAndCounters: `overlayfs stats` of a mount
// reports its upper usage, size budget, copy-ups, round trips, memory and
// FUSE requests, as JSON and as text.
func TestStatsReportsUpperUsageAndCounters(t *testing.T) {
	lower := tarLower(t)
	mounttest.GuardLower(t, lower)
	mnt := mounttest.Mount(t, lower, "--overlay2", "root:memory,size=64m")
	if err := os.WriteFile(filepath.Join(mnt, "etc/motd"), []byte(strings.Repeat("x", 100000)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := cliRun(t, "stats", "--json", mnt)
	if r.code != 0 {
		t.Fatalf("stats: %s", r.stderr)
	}
	var s ctlsock.Stats
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("stats --json: %v\n%s", err, r.stdout)
	}
	// WriteFile opens with O_TRUNC: the lower data is never copied, only
	// the metadata.
	if s.UpperFiles != 1 || s.UpperBytes < 100000 || s.SizeLimit != 64<<20 || s.DataCopyUps != 0 || s.MetaCopyUps != 1 ||
		s.GoferRoundTrips == 0 || s.VmRSS == 0 || s.RssAnon == 0 || s.Mountpoint != mnt || s.FuseRequests == 0 || s.FuseRequestsByOp["WRITE"] == 0 {
		t.Errorf("stats: %+v", s)
	}
	h := cliRun(t, "stats", mnt)
	for _, want := range []string{"size budget", "of 64 MiB used", "round trips", "0 data, 1 metadata", "resident", "fuse requests", "WRITE "} {
		if !strings.Contains(h.stdout, want) {
			t.Errorf("stats output lacks %q:\n%s", want, h.stdout)
		}
	}
}

// TestControlCommandsRefuseWhatTheyCannotServe: diff, stats and tar of a
// directory that is no overlayfs mount, and diff and tar of a mount
// without an upper layer, fail with an error that says so; a mount whose
// --upper-tar cannot be used fails and leaves nothing mounted.
func TestControlCommandsRefuseWhatTheyCannotServe(t *testing.T) {
	notMount := t.TempDir()
	lower := tarLower(t)
	none := mounttest.Mount(t, lower, "--overlay2", "none")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"diff", notMount}, "is not an overlayfs mount"},
		{[]string{"stats", notMount}, "is not an overlayfs mount"},
		{[]string{"tar", notMount, "-f", filepath.Join(t.TempDir(), "x.tar")}, "is not an overlayfs mount"},
		{[]string{"diff", none}, "no upper layer"},
		{[]string{"tar", none, "-f", filepath.Join(t.TempDir(), "y.tar")}, "no upper layer"},
		{[]string{"tar", none, "-f", filepath.Join(none, "z.tar")}, "inside the mount"},
		{[]string{"mount", "--overlay2", "none", "--upper-tar", "/x.tar", lower, notMount}, "cannot go with --overlay2=none"},
		{[]string{"mount", "--upper-tar", "/nonexistent.tar", lower, notMount}, "--upper-tar"},
	} {
		r := cliRun(t, tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("overlayfs %v: %d, stderr %q; want an error with %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if cliMounts(t, notMount) != 0 {
		t.Errorf("a failed mount left %s mounted", notMount)
	}
	// stats works without an upper layer.
	if r := cliRun(t, "stats", none); r.code != 0 || !strings.Contains(r.stdout, "round trips") {
		t.Errorf("stats of an --overlay2=none mount: %d %s %s", r.code, r.stdout, r.stderr)
	}
}

// TestStatsPerFileBackingServesDataInTheKernel: with backing=file, writing
// and reading back an upper file, by write(2) and by mmap, makes no WRITE
// or READ request (FUSE passthrough on the file's own host file), and stats
// still counts the upper's bytes against the size budget exactly as the
// private tmpfs does.
func TestStatsPerFileBackingServesDataInTheKernel(t *testing.T) {
	lower := tarLower(t)
	mounttest.GuardLower(t, lower)
	mnt := mounttest.Mount(t, lower, "--overlay2", "root:memory,size=64m,backing=file")
	data := []byte(strings.Repeat("0123456789abcdef", 1<<16)) // 1 MiB
	path := filepath.Join(mnt, "new")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %d bytes, %v; want the %d written", len(got), err, len(data))
	}
	// A lower file: copied up at the write open, then written and read
	// in place through a shared mapping.
	f, err := os.OpenFile(filepath.Join(mnt, "etc/motd"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(8192); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	copy(m[4096:], "mapped")
	if err := unix.Munmap(m); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := f.ReadAt(buf, 4096); err != nil || string(buf) != "mapped" {
		t.Errorf("read after a mapped write: %q, %v", buf, err)
	}
	r := cliRun(t, "stats", "--json", mnt)
	if r.code != 0 {
		t.Fatalf("stats: %s", r.stderr)
	}
	var s ctlsock.Stats
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("stats --json: %v\n%s", err, r.stdout)
	}
	if s.FuseRequestsByOp["WRITE"] != 0 || s.FuseRequestsByOp["READ"] != 0 || s.PassthroughOpens < 3 || s.PassthroughOff {
		t.Errorf("stats: %d WRITE and %d READ requests, %d passthrough opens (off %v); want no WRITE or READ, every open in passthrough",
			s.FuseRequestsByOp["WRITE"], s.FuseRequestsByOp["READ"], s.PassthroughOpens, s.PassthroughOff)
	}
	// The tmpfs counts whole pages: 1 MiB plus the two pages of motd.
	if want := uint64(len(data) + 8192); s.UpperBytes != want || s.SizeLimit != 64<<20 || s.UpperFiles != 2 {
		t.Errorf("stats: %d upper bytes in %d files, limit %d; want %d in 2, limit 64 MiB", s.UpperBytes, s.UpperFiles, s.SizeLimit, want)
	}
	h := cliRun(t, "stats", mnt)
	if !strings.Contains(h.stdout, "private tmpfs file per upper file") {
		t.Errorf("stats output does not say where the data lives:\n%s", h.stdout)
	}
}
