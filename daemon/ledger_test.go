package daemon_test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLedgerCountsRequests: the stats report the FUSE requests each file
// system answered, by opcode, so that a benchmark can divide them by the
// files it touched. Exact counts for requests the kernel sends exactly once
// per system call; the total covers every opcode.
func TestLedgerCountsRequests(t *testing.T) {
	for _, spec := range []string{"root:memory", "none"} {
		t.Run(spec, func(t *testing.T) {
			d, mnt := start(t, writeLower(t), spec)
			before := d.Stats()
			dir := filepath.Join(mnt, "d")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "a"), []byte("data"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, "b")); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
			after := d.Stats()
			delta := func(op string) uint64 { return after.FuseRequestsByOp[op] - before.FuseRequestsByOp[op] }
			for op, want := range map[string]uint64{"MKDIR": 1, "CREATE": 1, "WRITE": 1, "RENAME": 1, "UNLINK": 1, "RMDIR": 1} {
				if got := delta(op); got != want {
					t.Errorf("%s: %d requests counted, want %d (all: %v)", op, got, want, after.FuseRequestsByOp)
				}
			}
			var sum uint64
			for op, n := range after.FuseRequestsByOp {
				if op != "FORGET" {
					sum += n
				}
			}
			if after.FuseRequests != sum || after.FuseRequests-before.FuseRequests < 6 {
				t.Errorf("total %d (before %d), per-opcode sum %d", after.FuseRequests, before.FuseRequests, sum)
			}
		})
	}
}
