package mounttest

import (
	"testing"

	"overlayfs/internal/uringswitch"
)

// SetURing turns FUSE over io_uring on or off for the test and restores the
// kernel switches afterwards; see uringswitch.Set.
func SetURing(t testing.TB, on bool) { t.Helper(); uringswitch.Set(t, on) }
