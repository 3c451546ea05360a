package memfile

import (
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"

	"overlayfs/internal/hostio"
)

// benchRegion is the file size the benchmarks cycle through.
const benchRegion = 64 << 20

// Each benchmark runs the memfile path beside a plain pwrite/pread on a
// fresh fd of the same kind, in the same run, so their ratio is the overhead
// of the extent map and allocator.

func BenchmarkSeqWrite1M(b *testing.B) {
	buf := pattern(1, 1<<20)
	for _, bk := range backings {
		b.Run(bk.name+"/memfile", func(b *testing.B) {
			m := newFile(b, bk.open(b), Options{})
			var d Data
			b.SetBytes(int64(len(buf)))
			off := int64(0)
			for b.Loop() {
				if off == benchRegion {
					d.Release(m) // delete and start a new file
					off = 0
				}
				if _, err := d.WriteAt(m, buf, off); err != nil {
					b.Fatal(err)
				}
				off += int64(len(buf))
			}
			d.Release(m)
		})
		b.Run(bk.name+"/raw", func(b *testing.B) {
			f := bk.open(b)
			defer f.Close()
			fd := int(f.Fd())
			b.SetBytes(int64(len(buf)))
			off := int64(0)
			for b.Loop() {
				if off == benchRegion {
					if err := unix.Ftruncate(fd, 0); err != nil {
						b.Fatal(err)
					}
					off = 0
				}
				if _, err := hostio.PwriteFull(fd, buf, off); err != nil {
					b.Fatal(err)
				}
				off += int64(len(buf))
			}
		})
	}
}

// readBench runs read benchmarks over a prefilled benchRegion: next yields
// the offset of each read of size n.
func readBench(b *testing.B, n int, next func(i int) int64) {
	fill := pattern(2, 1<<20)
	for _, bk := range backings {
		b.Run(bk.name+"/memfile", func(b *testing.B) {
			m := newFile(b, bk.open(b), Options{})
			var d Data
			for off := int64(0); off < benchRegion; off += int64(len(fill)) {
				if _, err := d.WriteAt(m, fill, off); err != nil {
					b.Fatal(err)
				}
			}
			buf := make([]byte, n)
			b.SetBytes(int64(n))
			i := 0
			for b.Loop() {
				if _, err := d.ReadAt(m, buf, next(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
			d.Release(m)
		})
		b.Run(bk.name+"/raw", func(b *testing.B) {
			f := bk.open(b)
			defer f.Close()
			fd := int(f.Fd())
			for off := int64(0); off < benchRegion; off += int64(len(fill)) {
				if _, err := hostio.PwriteFull(fd, fill, off); err != nil {
					b.Fatal(err)
				}
			}
			buf := make([]byte, n)
			b.SetBytes(int64(n))
			i := 0
			for b.Loop() {
				if _, err := hostio.PreadFull(fd, buf, next(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkSeqRead1M(b *testing.B) {
	readBench(b, 1<<20, func(i int) int64 { return int64(i) << 20 % benchRegion })
}

func BenchmarkRandRead4K(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	offs := make([]int64, 1<<16)
	for i := range offs {
		offs[i] = r.Int64N(benchRegion/PageSize) * PageSize
	}
	readBench(b, 4096, func(i int) int64 { return offs[i%len(offs)] })
}

// BenchmarkRandRead4KFragmented reads a file whose extent map has one extent
// per page (written backwards, with another file interleaved), the worst
// case for the map lookup.
func BenchmarkRandRead4KFragmented(b *testing.B) {
	m := newFile(b, openMemfd(b), Options{})
	var d, other Data
	page := pattern(3, PageSize)
	for off := int64(benchRegion - PageSize); off >= 0; off -= PageSize {
		if _, err := d.WriteAt(m, page, off); err != nil {
			b.Fatal(err)
		}
		if _, err := other.WriteAt(m, page, off); err != nil {
			b.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, PageSize)
	b.SetBytes(PageSize)
	b.ReportMetric(float64(len(d.ext)), "extents")
	for b.Loop() {
		if _, err := d.ReadAt(m, buf, r.Int64N(benchRegion/PageSize)*PageSize); err != nil {
			b.Fatal(err)
		}
	}
	d.Release(m)
	other.Release(m)
}
