package daemon

import (
	"errors"
	"fmt"
	"strings"
)

// SplitLowerDirs splits a LOWERDIR list as overlayfs's lowerdir= takes it:
// directories separated by ':', top-most first, with "\:" standing for a
// colon and "\\" for a backslash inside a name.
func SplitLowerDirs(spec string) ([]string, error) {
	var dirs []string
	var cur strings.Builder
	for i := 0; i < len(spec); i++ {
		switch c := spec[i]; {
		case c == '\\' && i+1 < len(spec) && (spec[i+1] == ':' || spec[i+1] == '\\'):
			cur.WriteByte(spec[i+1])
			i++
		case c == ':':
			dirs = append(dirs, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	dirs = append(dirs, cur.String())
	for i, d := range dirs {
		if d == "" {
			if len(dirs) == 1 {
				return nil, errors.New("LOWERDIR is empty")
			}
			return nil, fmt.Errorf("LOWERDIR %q: lower directory %d of %d is empty (separate directories with one ':', write a ':' inside a name as '\\:')", spec, i+1, len(dirs))
		}
	}
	return dirs, nil
}

// JoinLowerDirs is the inverse of SplitLowerDirs.
func JoinLowerDirs(dirs []string) string {
	esc := make([]string, len(dirs))
	for i, d := range dirs {
		esc[i] = strings.ReplaceAll(strings.ReplaceAll(d, `\`, `\\`), ":", `\:`)
	}
	return strings.Join(esc, ":")
}
