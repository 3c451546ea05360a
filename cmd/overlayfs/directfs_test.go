package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"overlayfs/internal/mounttest"
)

// goferRoundTrips reads the mount's gofer round trips from `overlayfs
// stats --json`.
func goferRoundTrips(t *testing.T, mnt string) uint64 {
	t.Helper()
	r := cliRun(t, "stats", "--json", mnt)
	if r.code != 0 {
		t.Fatalf("stats: %d %s", r.code, r.stderr)
	}
	var s struct {
		GoferRoundTrips *uint64 `json:"gofer_round_trips"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || s.GoferRoundTrips == nil {
		t.Fatalf("stats --json: %v, no gofer_round_trips in\n%s", err, r.stdout)
	}
	return *s.GoferRoundTrips
}

// TestDirectFSFlagAndHelperOption pins what --directfs and the mount
// helper's directfs/nodirectfs options choose: a fresh mount's lstat of
// every file by name costs no gofer round trip with directfs, and one or
// more per file through the gofer, with the same data read either way.
func TestDirectFSFlagAndHelperOption(t *testing.T) {
	lower := t.TempDir()
	const files = 30
	for i := range files {
		p := filepath.Join(lower, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mounttest.GuardLower(t, lower)
	helper := filepath.Join(t.TempDir(), mountHelperName)
	if err := os.Symlink(mounttest.Binary(t), helper); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		direct bool
		mount  func(t *testing.T) string
	}{
		{"--directfs=true", true, func(t *testing.T) string { return mounttest.Mount(t, lower, "--directfs=true") }},
		{"--directfs=false", false, func(t *testing.T) string { return mounttest.Mount(t, lower, "--directfs=false") }},
		{"helper nodirectfs", false, func(t *testing.T) string { return helperMount(t, helper, lower, "nodirectfs") }},
		{"helper directfs", true, func(t *testing.T) string { return helperMount(t, helper, lower, "directfs") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mnt := c.mount(t)
			before := goferRoundTrips(t, mnt)
			for i := range files {
				p := filepath.Join(mnt, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%d", i))
				if _, err := os.Lstat(p); err != nil {
					t.Fatal(err)
				}
				if b, err := os.ReadFile(p); err != nil || string(b) != fmt.Sprint(i) {
					t.Errorf("%s reads %q, %v", p, b, err)
				}
			}
			rt := goferRoundTrips(t, mnt) - before
			if c.direct && rt != 0 {
				t.Errorf("with directfs, %d files cost %d gofer round trips, want 0", files, rt)
			}
			if !c.direct && rt < files {
				t.Errorf("through the gofer, %d files cost only %d round trips: directfs was on", files, rt)
			}
		})
	}
}

// helperMount mounts lower with the mount helper and option opt.
func helperMount(t *testing.T, helper, lower, opt string) string {
	t.Helper()
	mnt := t.TempDir()
	out, err := mounttest.Command(t, helper, "overlayfs", mnt, "-o", "lowerdir="+lower+",overlay2=root:memory,"+opt).CombinedOutput()
	if err != nil {
		t.Fatalf("mount helper -o %s: %v\n%s", opt, err, out)
	}
	t.Cleanup(func() { mounttest.Unmount(t, mnt, "") })
	return mnt
}
