package memfile

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func TestAllocateAlignedAndZero(t *testing.T) {
	for _, b := range backings {
		t.Run(b.name, func(t *testing.T) {
			m := newFile(t, b.open(t), Options{ChunkSize: 1 << 20})
			for _, n := range []uint64{1, 4095, 4096, 4097, 3 << 20} {
				r, err := m.Allocate(n)
				if err != nil {
					t.Fatalf("Allocate(%d): %v", n, err)
				}
				if r.Start%PageSize != 0 || r.Len() != pageUp(n) {
					t.Fatalf("Allocate(%d) = %+v, want page aligned length %d", n, r, pageUp(n))
				}
				buf := make([]byte, r.Len())
				if _, err := m.ReadAt(buf, int64(r.Start)); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf, make([]byte, len(buf))) {
					t.Fatalf("fresh range %+v not zero", r)
				}
			}
			if u := m.Usage(); u.Allocated%(1<<20) != 0 || u.Allocated < u.InUse {
				t.Fatalf("usage %+v: file must grow in whole chunks and cover the pages in use", u)
			}
		})
	}
}

func TestFreeReusesAndZeroes(t *testing.T) {
	for _, b := range backings {
		t.Run(b.name, func(t *testing.T) {
			m := newFile(t, b.open(t), Options{ChunkSize: 1 << 20})
			r, err := m.Allocate(64 << 10)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.WriteAt(pattern(7, int(r.Len())), int64(r.Start)); err != nil {
				t.Fatal(err)
			}
			m.Free(r)
			if u := m.Usage(); u.InUse != 0 {
				t.Fatalf("InUse after free = %d, want 0", u.InUse)
			}
			r2, err := m.Allocate(64 << 10)
			if err != nil {
				t.Fatal(err)
			}
			if r2 != r {
				t.Fatalf("freed space not reused: got %+v, want %+v", r2, r)
			}
			buf := make([]byte, r2.Len())
			if _, err := m.ReadAt(buf, int64(r2.Start)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, make([]byte, len(buf))) {
				t.Fatal("reused range still holds old data")
			}
		})
	}
}

func TestFreePunchesHole(t *testing.T) {
	for _, b := range backings {
		t.Run(b.name, func(t *testing.T) {
			m := newFile(t, b.open(t), Options{})
			const n = 8 << 20
			r, err := m.Allocate(n)
			if err != nil {
				t.Fatal(err)
			}
			before := blocksOf(t, m.Fd())
			if _, err := m.WriteAt(pattern(1, n), int64(r.Start)); err != nil {
				t.Fatal(err)
			}
			written := blocksOf(t, m.Fd())
			if written < before+n {
				t.Fatalf("st_blocks after writing %d bytes: %d (was %d)", n, written, before)
			}
			m.Free(r)
			after := blocksOf(t, m.Fd())
			if after > before+64<<10 {
				t.Fatalf("st_blocks after free = %d bytes, want back near %d", after, before)
			}
			if u := m.Usage(); u.OnDisk != after {
				t.Fatalf("Usage.OnDisk = %d, st_blocks*512 = %d", u.OnDisk, after)
			}
		})
	}
}

func TestLimit(t *testing.T) {
	m := newFile(t, openMemfd(t), Options{Limit: 1 << 20, ChunkSize: 4 << 20})
	r, err := m.Allocate(768 << 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Allocate(512 << 10); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Allocate past limit: err = %v, want ENOSPC", err)
	}
	if _, err := m.Allocate(256 << 10); err != nil {
		t.Fatalf("Allocate up to the limit: %v", err)
	}
	m.Free(r)
	if _, err := m.Allocate(512 << 10); err != nil {
		t.Fatalf("Allocate after free: %v", err)
	}
	if u := m.Usage(); u.Limit != 1<<20 || u.InUse != 768<<10 {
		t.Fatalf("usage = %+v", u)
	}
}

func TestBadInput(t *testing.T) {
	m := newFile(t, openMemfd(t), Options{ChunkSize: 1 << 20})
	if _, err := m.Allocate(0); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Allocate(0): %v, want EINVAL", err)
	}
	if _, err := m.Allocate(1 << 63); err == nil {
		t.Errorf("Allocate(1<<63) succeeded")
	}
	r, err := m.Allocate(8192)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Range{
		{1, 4096},               // unaligned
		{r.End, r.End + 4096},   // free space
		{1 << 40, 1<<40 + 4096}, // past the end
		{r.Start, r.End + 1<<20 + 4096},
	} {
		if err := m.free1(bad); err == nil {
			t.Errorf("free of %+v accepted", bad)
		}
		m.Free(bad) // must not panic or corrupt
	}
	m.Free(r)
	m.Free(r) // double free is ignored
	if u := m.Usage(); u.InUse != 0 {
		t.Fatalf("InUse = %d after bad frees, want 0", u.InUse)
	}
	r2, err := m.Allocate(8192)
	if err != nil || r2 != r {
		t.Fatalf("Allocate after double free = %+v, %v", r2, err)
	}
	r3, err := m.Allocate(8192)
	if err != nil || r3.Start < r2.End {
		t.Fatalf("double free handed out the same space twice: %+v and %+v", r2, r3)
	}
}

func TestConcurrentAllocateWriteFree(t *testing.T) {
	for _, b := range backings {
		t.Run(b.name, func(t *testing.T) {
			m := newFile(t, b.open(t), Options{ChunkSize: 1 << 20})
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 50 {
						n := uint64(1+(g+i)%5) * PageSize
						r, err := m.Allocate(n)
						if err != nil {
							errs <- err
							return
						}
						want := pattern(byte(g*50+i), int(n))
						if _, err := m.WriteAt(want, int64(r.Start)); err != nil {
							errs <- err
							return
						}
						got := make([]byte, n)
						if _, err := m.ReadAt(got, int64(r.Start)); err != nil {
							errs <- err
							return
						}
						if !bytes.Equal(got, want) {
							errs <- fmt.Errorf("goroutine %d: range %+v overwritten by someone else", g, r)
							return
						}
						_ = m.Usage()
						m.Free(r)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if u := m.Usage(); u.InUse != 0 {
				t.Fatalf("InUse = %d after all frees", u.InUse)
			}
		})
	}
}

// TestWriteDeleteBounded writes and deletes 2 GiB in 64 MiB files; the
// backing file must not grow and its blocks must track the live data.
func TestWriteDeleteBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 2 GiB")
	}
	for _, b := range backings {
		t.Run(b.name, func(t *testing.T) {
			m := newFile(t, b.open(t), Options{})
			const step = 64 << 20
			buf := pattern(3, 1<<20)
			var prev Data
			for i := 0; i < (2<<30)/step; i++ {
				var d Data
				for off := int64(0); off < step; off += int64(len(buf)) {
					if _, err := d.WriteAt(m, buf, off); err != nil {
						t.Fatal(err)
					}
				}
				prev.Release(m) // keep one file live while the next is written
				prev = d
				u := m.Usage()
				if u.OnDisk > 3*step || u.Allocated > DefaultChunkSize {
					t.Fatalf("after %d MiB: usage %+v grows without bound", (i+1)*step>>20, u)
				}
			}
			prev.Release(m)
			if u := m.Usage(); u.InUse != 0 || u.OnDisk > 1<<20 {
				t.Fatalf("after deleting everything: usage %+v", u)
			}
		})
	}
}

func TestCloseDecommits(t *testing.T) {
	f := openTmpfile(t)
	dup, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(dup) })
	m, err := New(f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var d Data
	if _, err := d.WriteAt(m, pattern(1, 4<<20), 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if n := blocksOf(t, dup); n != 0 {
		t.Fatalf("st_blocks*512 after Close = %d, want 0", n)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := m.Allocate(4096); err == nil {
		t.Fatal("Allocate after Close succeeded")
	}
}

// TestCloseWhileInUse closes a File while other goroutines still use it:
// nothing panics and late calls fail cleanly instead of touching a reused fd.
func TestCloseWhileInUse(t *testing.T) {
	m, err := New(openMemfd(t), Options{ChunkSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := pattern(byte(g), PageSize)
			for range 200 {
				r, err := m.Allocate(PageSize)
				if err != nil {
					return // closed
				}
				m.WriteAt(buf, int64(r.Start))
				m.ReadAt(buf, int64(r.Start))
				m.Usage()
				m.Free(r)
			}
		}()
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := m.WriteAt([]byte("x"), 0); err == nil {
		t.Fatal("WriteAt after Close succeeded")
	}
}
