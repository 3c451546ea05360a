package fuseuring

import (
	"testing"

	"overlayfs/internal/uringswitch"
)

// requireURing makes FUSE over io_uring usable for the test (turning the
// kernel switches on as root and restoring them afterwards) or skips
// saying why.
func requireURing(t testing.TB) {
	t.Helper()
	uringswitch.Set(t, true)
	if err := URingAvailable(); err != nil {
		t.Skip(err)
	}
}

// switchURingOff turns FUSE over io_uring off for the test, as root, and
// restores the switch afterwards.
func switchURingOff(t *testing.T) {
	t.Helper()
	uringswitch.Set(t, false)
}
