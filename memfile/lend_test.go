package memfile

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"
)

// Lend hands out the backing runs of a fully written range, in order, and
// nothing for a range with a hole, past the end, or once freed ranges may
// be reused without a punch.
func TestLendGivesTheRunsThatHoldTheBytes(t *testing.T) {
	for _, b := range backings {
		t.Run(b.name, func(t *testing.T) {
			m := newFile(t, b.open(t), Options{ChunkSize: 64 << 10})
			var d Data
			want := pattern(7, 3*PageSize)
			// Two writes far apart in time land in separate runs; a hole
			// follows them.
			if _, err := d.WriteAt(m, want[:PageSize], 0); err != nil {
				t.Fatal(err)
			}
			var other Data
			if _, err := other.WriteAt(m, pattern(9, PageSize), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := d.WriteAt(m, want[PageSize:], PageSize); err != nil {
				t.Fatal(err)
			}
			if _, err := d.WriteAt(m, []byte("end"), 5*PageSize); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name    string
				off, n  int64
				lent    bool
				wantLen int64
			}{
				{"whole written start", 0, 3 * PageSize, true, 3 * PageSize},
				{"inside one run", 100, 200, true, 200},
				{"across runs", PageSize - 10, 20, true, 20},
				{"into the hole", 2 * PageSize, 2 * PageSize, false, 0},
				{"past the end", 5 * PageSize, 10, false, 0},
				{"empty", 0, 0, false, 0},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var got []byte
					ok, err := d.Lend(m, tc.off, tc.n, func(fd int, fileOff, cnt int64) error {
						p := make([]byte, cnt)
						if _, err := unix.Pread(fd, p, fileOff); err != nil {
							return err
						}
						got = append(got, p...)
						return nil
					})
					if err != nil || ok != tc.lent {
						t.Fatalf("Lend(%d, %d) = %v, %v; want %v", tc.off, tc.n, ok, err, tc.lent)
					}
					if ok && !bytes.Equal(got, want[tc.off:tc.off+tc.wantLen]) {
						t.Fatalf("Lend(%d, %d) lent other bytes", tc.off, tc.n)
					}
				})
			}
			m.reusedUnpunched.Store(true)
			if ok, _ := d.Lend(m, 0, PageSize, func(int, int64, int64) error { return nil }); ok {
				t.Fatal("Lend lent pages of a File that reuses unpunched ranges")
			}
		})
	}
}
