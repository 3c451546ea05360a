package main

// End-to-end tests of stats and of the control commands' errors.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
