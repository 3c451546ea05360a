package main

import (
	"path/filepath"
	"strings"
	"testing"

	"overlayfs/internal/mounttest"
)

// TestStatsSaysWhereUpperDataLives mounts each medium and checks that
// stats names what holds the upper data: a memfd in memory for
// root:memory (no filestore claimed on disk), a sparse filestore for dir=.
func TestStatsSaysWhereUpperDataLives(t *testing.T) {
	lower := cliLower(t)
	mounttest.GuardLower(t, lower)
	cases := []struct {
		spec      string
		want, not []string
	}{
		{"root:memory", []string{"memfd ", "of memory"}, []string{"filestore", "allocated", "on disk"}},
		{"root:dir=" + t.TempDir(), []string{"filestore ", "on disk (a sparse file"}, []string{"memfd", "allocated"}},
		{"none", []string{"filestore ", "none"}, []string{"memfd", "allocated"}},
	}
	for _, c := range cases {
		t.Run(strings.SplitN(c.spec, "=", 2)[0], func(t *testing.T) {
			mnt := mounttest.Mount(t, lower, "--overlay2="+c.spec)
			if c.spec != "none" {
				if err := faultWrite(filepath.Join(mnt, "new"), []byte("data")); err != nil {
					t.Fatal(err)
				}
			}
			r := cliRun(t, "stats", mnt)
			if r.code != 0 {
				t.Fatalf("stats: %d %s", r.code, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stats lacks %q:\n%s", w, r.stdout)
				}
			}
			for _, n := range c.not {
				if strings.Contains(r.stdout, n) {
					t.Errorf("stats says %q:\n%s", n, r.stdout)
				}
			}
		})
	}
}
