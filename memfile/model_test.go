package memfile

import (
	"bytes"
	"errors"
	"io"
	"sort"
	"testing"

	"golang.org/x/sys/unix"
	"pgregory.net/rapid"
)

// TestAllocatorModel checks the allocator against a set of live ranges under
// random allocate/free/write sequences.
func TestAllocatorModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m, err := New(openMemfd(t), Options{ChunkSize: 64 << 10})
		if err != nil {
			rt.Fatal(err)
		}
		defer m.Close()
		var live []Range
		contents := map[Range][]byte{}
		rt.Repeat(map[string]func(*rapid.T){
			"allocate": func(rt *rapid.T) {
				n := uint64(rapid.IntRange(1, 40*PageSize).Draw(rt, "bytes"))
				r, err := m.Allocate(n)
				if err != nil {
					rt.Fatalf("Allocate(%d): %v", n, err)
				}
				if r.Start%PageSize != 0 || r.Len() != pageUp(n) {
					rt.Fatalf("Allocate(%d) = %+v", n, r)
				}
				buf := make([]byte, r.Len())
				if _, err := m.ReadAt(buf, int64(r.Start)); err != nil {
					rt.Fatal(err)
				}
				if !bytes.Equal(buf, make([]byte, len(buf))) {
					rt.Fatalf("new range %+v is not zero", r)
				}
				data := pattern(byte(len(live)), int(r.Len()))
				if _, err := m.WriteAt(data, int64(r.Start)); err != nil {
					rt.Fatal(err)
				}
				live = append(live, r)
				contents[r] = data
			},
			"free": func(rt *rapid.T) {
				if len(live) == 0 {
					rt.Skip("nothing to free")
				}
				i := rapid.IntRange(0, len(live)-1).Draw(rt, "index")
				r := live[i]
				pages := int(r.Len() / PageSize)
				// Free a page-aligned part: head, tail or all of it.
				cut := uint64(rapid.IntRange(0, pages-1).Draw(rt, "cut")) * PageSize
				freeHead := rapid.Bool().Draw(rt, "head")
				data := contents[r]
				delete(contents, r)
				live = append(live[:i], live[i+1:]...)
				if cut == 0 {
					m.Free(r)
					return
				}
				var freed, kept Range
				var keptData []byte
				if freeHead {
					freed, kept = Range{r.Start, r.Start + cut}, Range{r.Start + cut, r.End}
					keptData = data[cut:]
				} else {
					kept, freed = Range{r.Start, r.Start + cut}, Range{r.Start + cut, r.End}
					keptData = data[:cut]
				}
				m.Free(freed)
				live = append(live, kept)
				contents[kept] = keptData
			},
			"": func(rt *rapid.T) {
				sorted := append([]Range(nil), live...)
				sort.Slice(sorted, func(i, j int) bool { return sorted[i].Start < sorted[j].Start })
				var sum uint64
				for i, r := range sorted {
					sum += r.Len()
					if i > 0 && sorted[i-1].End > r.Start {
						rt.Fatalf("live ranges overlap: %+v %+v", sorted[i-1], r)
					}
					got := make([]byte, r.Len())
					if _, err := m.ReadAt(got, int64(r.Start)); err != nil {
						rt.Fatal(err)
					}
					if !bytes.Equal(got, contents[r]) {
						rt.Fatalf("range %+v lost its data", r)
					}
				}
				u := m.Usage()
				if u.InUse != sum || u.Allocated < sum || u.Allocated%(64<<10) != 0 {
					rt.Fatalf("usage %+v, live bytes %d", u, sum)
				}
				m.mu.Lock()
				defer m.mu.Unlock()
				var free uint64
				for i, f := range m.free {
					free += f.Len()
					if f.Len() == 0 || (i > 0 && m.free[i-1].End >= f.Start) {
						rt.Fatalf("free list not sorted and coalesced: %+v", m.free)
					}
				}
				if free+sum != m.size {
					rt.Fatalf("free %d + live %d != file size %d", free, sum, m.size)
				}
			},
		})
	})
}

// TestDataModel checks Data against a plain byte slice per file under random
// write/truncate/punch/allocate/release sequences, with and without a limit.
func TestDataModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		limit := rapid.SampledFrom([]uint64{0, 96 << 10}).Draw(rt, "limit")
		m, err := New(openMemfd(t), Options{ChunkSize: 64 << 10, Limit: limit})
		if err != nil {
			rt.Fatal(err)
		}
		defer m.Close()
		files := make([]Data, 3)
		models := make([][]byte, 3)
		offset := func(rt *rapid.T) int64 {
			// Mix page-aligned and arbitrary offsets.
			if rapid.Bool().Draw(rt, "aligned") {
				return int64(rapid.IntRange(0, 40).Draw(rt, "page")) * PageSize
			}
			return int64(rapid.IntRange(0, 160<<10).Draw(rt, "off"))
		}
		length := func(rt *rapid.T) int64 { return int64(rapid.IntRange(1, 40<<10).Draw(rt, "len")) }
		enospcOK := func(rt *rapid.T, err error) {
			if err != nil && !(limit != 0 && errors.Is(err, unix.ENOSPC)) {
				rt.Fatalf("unexpected error: %v", err)
			}
		}
		rt.Repeat(map[string]func(*rapid.T){
			"write": func(rt *rapid.T) {
				i := rapid.IntRange(0, 2).Draw(rt, "file")
				off, n := offset(rt), length(rt)
				p := pattern(byte(rapid.IntRange(0, 255).Draw(rt, "seed")), int(n))
				w, err := files[i].WriteAt(m, p, off)
				enospcOK(rt, err)
				if err == nil && w != len(p) || w < 0 || w > len(p) {
					rt.Fatalf("WriteAt = %d, %v", w, err)
				}
				if w > 0 {
					models[i] = grow(models[i], off+int64(w))
					copy(models[i][off:], p[:w])
				}
			},
			"truncate": func(rt *rapid.T) {
				i := rapid.IntRange(0, 2).Draw(rt, "file")
				size := offset(rt)
				if err := files[i].Truncate(m, size); err != nil {
					rt.Fatal(err)
				}
				if size < int64(len(models[i])) {
					models[i] = models[i][:size]
				} else {
					models[i] = grow(models[i], size)
				}
			},
			"punch": func(rt *rapid.T) {
				i := rapid.IntRange(0, 2).Draw(rt, "file")
				off, n := offset(rt), length(rt)
				if err := files[i].PunchHole(m, off, n); err != nil {
					rt.Fatal(err)
				}
				if size := int64(len(models[i])); off < size {
					clear(models[i][off:min(size, off+n)])
				}
			},
			"allocate": func(rt *rapid.T) {
				i := rapid.IntRange(0, 2).Draw(rt, "file")
				off, n := offset(rt), length(rt)
				keep := rapid.Bool().Draw(rt, "keepSize")
				blocks := files[i].Blocks()
				err := files[i].Allocate(m, off, n, keep)
				enospcOK(rt, err)
				if err != nil {
					if files[i].Blocks() != blocks {
						rt.Fatal("failed Allocate changed the allocation")
					}
					return
				}
				if !keep {
					models[i] = grow(models[i], off+n)
				}
			},
			"release": func(rt *rapid.T) {
				i := rapid.IntRange(0, 2).Draw(rt, "file")
				files[i].Release(m)
				models[i] = nil
			},
			"": func(rt *rapid.T) {
				checkData(rt, m, files, models)
			},
		})
	})
}

// grow extends b with zeros to n bytes (never shrinks).
func grow(b []byte, n int64) []byte {
	if int64(len(b)) >= n {
		return b
	}
	return append(b, make([]byte, n-int64(len(b)))...)
}

// checkData verifies every invariant of files against their models.
func checkData(rt *rapid.T, m *File, files []Data, models [][]byte) {
	var blocks int64
	var backing []Range
	for i := range files {
		d, want := &files[i], models[i]
		if d.Size() != int64(len(want)) {
			rt.Fatalf("file %d: size %d, model %d", i, d.Size(), len(want))
		}
		got := make([]byte, len(want)+10)
		n, err := d.ReadAt(m, got, 0)
		if len(want) > 0 || len(got) > 0 {
			if n != len(want) || err != io.EOF {
				rt.Fatalf("file %d: read = %d, %v; want %d, EOF", i, n, err, len(want))
			}
		}
		if !bytes.Equal(got[:n], want) {
			rt.Fatalf("file %d: contents differ from the model", i)
		}
		blocks += d.Blocks()
		for j, e := range d.ext {
			if e.n <= 0 || e.off%PageSize != 0 || e.n%PageSize != 0 || e.start%PageSize != 0 {
				rt.Fatalf("file %d: bad extent %+v", i, e)
			}
			if j > 0 && d.ext[j-1].end() > e.off {
				rt.Fatalf("file %d: extents overlap or unsorted: %+v", i, d.ext)
			}
			backing = append(backing, Range{e.start, e.start + uint64(e.n)})
		}
		// Every byte not backed must be zero in the model, and seeks agree.
		for off := int64(0); off < int64(len(want)); off += 3001 {
			dataOff, err := d.SeekData(off)
			end := int64(len(want))
			if err == nil {
				end = dataOff
			} else if err != unix.ENXIO {
				rt.Fatalf("SeekData(%d): %v", off, err)
			}
			if end < off || !bytes.Equal(want[off:end], make([]byte, end-off)) {
				rt.Fatalf("file %d: SeekData(%d) = %d skips data", i, off, dataOff)
			}
			hole, err := d.SeekHole(off)
			if err != nil || hole < off || hole > int64(len(want)) {
				rt.Fatalf("file %d: SeekHole(%d) = %d, %v", i, off, hole, err)
			}
			if fo, n, ok := d.extent(off); ok {
				buf := make([]byte, n)
				if _, err := m.ReadAt(buf, fo); err != nil {
					rt.Fatal(err)
				}
				if !bytes.Equal(buf, want[off:off+n]) {
					rt.Fatalf("file %d: extent(%d) does not hold the file's bytes", i, off)
				}
			}
		}
	}
	u := m.Usage()
	if uint64(blocks)*512 != u.InUse {
		rt.Fatalf("files hold %d bytes, allocator has %d in use", blocks*512, u.InUse)
	}
	if u.Limit != 0 && u.InUse > u.Limit {
		rt.Fatalf("in use %d over limit %d", u.InUse, u.Limit)
	}
	sort.Slice(backing, func(i, j int) bool { return backing[i].Start < backing[j].Start })
	for i := 1; i < len(backing); i++ {
		if backing[i-1].End > backing[i].Start {
			rt.Fatalf("two extents share backing pages: %+v %+v", backing[i-1], backing[i])
		}
	}
}
