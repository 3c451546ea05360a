package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
	"overlayfs/internal/mounttest"
)

// TestRemountAfterPlainUmount unmounts with plain umount(2), not `overlayfs
// umount`, and mounts again on the same mountpoint at once, while the old
// daemon may still be tearing down. Every new mount must be reachable:
// diff and stats answer from its own daemon (the diff names the file only
// this round wrote), and no daemon log reports a control socket in use.
func TestRemountAfterPlainUmount(t *testing.T) {
	lower, mnt, logs := cliLower(t), t.TempDir(), t.TempDir()
	mounttest.GuardLower(t, lower)
	cliEnsureUnmounted(t, mnt, nil)
	const rounds = 8
	for i := range rounds {
		log := filepath.Join(logs, fmt.Sprintf("daemon%d.log", i))
		if r := cliRun(t, "mount", "--overlay2", "root:memory", "--log", log, lower, mnt); r.code != 0 {
			b, _ := os.ReadFile(log)
			t.Fatalf("round %d: mount: exit %d: %s\nlog:\n%s", i, r.code, r.stderr, b)
		}
		name := fmt.Sprintf("round%d", i)
		// Upper data makes the old daemon's teardown slow, which widens
		// the window in which it outlives its mount.
		if err := os.WriteFile(filepath.Join(mnt, name), make([]byte, 128<<20), 0o644); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if r := cliRun(t, "diff", mnt); r.code != 0 || r.stdout != "A /"+name+"\n" {
			t.Errorf("round %d: diff: exit %d, %q, %s; want the new mount's change only", i, r.code, r.stdout, r.stderr)
		}
		r := cliRun(t, "stats", "--json", mnt)
		var s ctlsock.Stats
		if err := json.Unmarshal([]byte(r.stdout), &s); r.code != 0 || err != nil || s.UpperInodes == 0 {
			t.Errorf("round %d: stats: exit %d, %v: %s%s", i, r.code, err, r.stdout, r.stderr)
		}
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Fatalf("round %d: umount(2): %v", i, err)
		}
	}
	deadline := time.Now().Add(cliDeadline)
	for len(cliProcs(mnt)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("daemons outlive their mounts: %v", cliProcs(mnt))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range rounds {
		b, _ := os.ReadFile(filepath.Join(logs, fmt.Sprintf("daemon%d.log", i)))
		if strings.Contains(string(b), "control socket") {
			t.Errorf("round %d: the daemon log reports a control socket problem:\n%s", i, b)
		}
	}
	// Every daemon removed its socket and pid file on the way out.
	if left := ctlsock.Candidates(ctlsock.Dir(), mnt, 0)[1:]; len(left) > 0 {
		t.Errorf("runtime files of exited daemons remain: %v", left)
	}
}
