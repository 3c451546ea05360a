package daemon

import (
	"reflect"
	"testing"
)

// TestLowerDirListSyntax pins the lowerdir= syntax: ':' separates layers,
// top-most first, and "\:" keeps a colon inside a name.
func TestLowerDirListSyntax(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want []string
	}{
		{"/a", []string{"/a"}},
		{"/a:/b:/c", []string{"/a", "/b", "/c"}},
		{`/a\:1:/b`, []string{"/a:1", "/b"}},
		{`/a\\:/b`, []string{`/a\`, "/b"}},
		{`/a\b`, []string{`/a\b`}},
	} {
		got, err := SplitLowerDirs(tc.spec)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SplitLowerDirs(%q) = %q, %v; want %q", tc.spec, got, err, tc.want)
			continue
		}
		if back, _ := SplitLowerDirs(JoinLowerDirs(got)); !reflect.DeepEqual(back, got) {
			t.Errorf("JoinLowerDirs(%q) does not split back: %q", got, back)
		}
	}
	for _, bad := range []string{"", ":", "/a:", ":/a", "/a::/b"} {
		if _, err := SplitLowerDirs(bad); err == nil {
			t.Errorf("SplitLowerDirs(%q) accepted an empty directory", bad)
		}
	}
}
