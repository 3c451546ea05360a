package lower

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkLstatWalk looks up every path of a tree once, component by
// component from a fresh layer, as a fresh mount's lstat of every file by
// name does, with directfs and through the gofer. The tree is
// $LOWER_WALK_TREE (e.g. a copy of /usr/local/go/src), else 2,000 files in
// 100 directories.
//
//	go test -run XXX -bench LstatWalk -benchtime 5x ./lower/
func BenchmarkLstatWalk(b *testing.B) {
	src := os.Getenv("LOWER_WALK_TREE")
	if src == "" {
		src = b.TempDir()
		files := map[string]string{}
		for i := range 2000 {
			files[fmt.Sprintf("d%d/e%d/f%d", i%10, i%100, i)] = "x"
		}
		writeFiles(b, src, files)
	}
	var paths []string
	err := filepath.Walk(src, func(p string, _ os.FileInfo, err error) error {
		if p != src {
			paths = append(paths, strings.TrimPrefix(p, src+"/"))
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, direct := range []bool{true, false} {
		b.Run(map[bool]string{true: "directfs", false: "gofer"}[direct], func(b *testing.B) {
			for range b.N {
				l := newStackDirect(b, direct, src)
				dirs := map[string]*Node{"": l.Root()}
				for _, p := range paths {
					dir, base := filepath.Split(p)
					n, err := l.Lookup(dirs[strings.TrimSuffix(dir, "/")], base)
					if err != nil {
						b.Fatal(p, err)
					}
					if n.IsDir() {
						dirs[p] = n
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(paths)), "ns/path")
		})
	}
}
