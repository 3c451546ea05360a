package fusekit

import (
	"sync"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestCountedNamesEachRequest: each request reaching the wrapper is counted
// once under its own opcode, and the wrapped file system still answers it.
func TestCountedNamesEachRequest(t *testing.T) {
	for _, tc := range []struct {
		op   string
		call func(fuse.RawFileSystem)
	}{
		{"LOOKUP", func(fs fuse.RawFileSystem) { fs.Lookup(nil, &fuse.InHeader{}, "x", &fuse.EntryOut{}) }},
		{"GETATTR", func(fs fuse.RawFileSystem) { fs.GetAttr(nil, &fuse.GetAttrIn{}, &fuse.AttrOut{}) }},
		{"SETATTR", func(fs fuse.RawFileSystem) { fs.SetAttr(nil, &fuse.SetAttrIn{}, &fuse.AttrOut{}) }},
		{"CREATE", func(fs fuse.RawFileSystem) { fs.Create(nil, &fuse.CreateIn{}, "x", &fuse.CreateOut{}) }},
		{"WRITE", func(fs fuse.RawFileSystem) { fs.Writev(nil, &fuse.WriteIn{}, [][]byte{nil}) }},
		{"IOCTL", func(fs fuse.RawFileSystem) { fs.Ioctl(nil, &fuse.IoctlIn{}, nil, &fuse.IoctlOut{}, nil) }},
		{"GETXATTR", func(fs fuse.RawFileSystem) { fs.GetXAttr(nil, &fuse.InHeader{}, "a", nil) }},
		{"OPENDIR", func(fs fuse.RawFileSystem) { fs.OpenDir(nil, &fuse.OpenIn{}, &fuse.OpenOut{}) }},
		{"READDIRPLUS", func(fs fuse.RawFileSystem) { fs.ReadDirPlus(nil, &fuse.ReadIn{}, nil) }},
		{"RELEASEDIR", func(fs fuse.RawFileSystem) { fs.ReleaseDir(&fuse.ReleaseIn{}) }},
		{"FLUSH", func(fs fuse.RawFileSystem) { fs.Flush(nil, &fuse.FlushIn{}) }},
		{"RELEASE", func(fs fuse.RawFileSystem) { fs.Release(nil, &fuse.ReleaseIn{}) }},
		{"FORGET", func(fs fuse.RawFileSystem) { fs.Forget(2, 1) }},
	} {
		var l Ledger
		fs := Counted(fuse.NewDefaultRawFileSystem(), &l)
		tc.call(fs)
		got := l.Counts()
		if len(got) != 1 || got[tc.op] != 1 {
			t.Errorf("%s: counts %v, want {%s:1}", tc.op, got, tc.op)
		}
		wantTotal := uint64(1)
		if tc.op == "FORGET" {
			wantTotal = 0
		}
		if l.Total() != wantTotal {
			t.Errorf("%s: total %d, want %d", tc.op, l.Total(), wantTotal)
		}
	}
	var l Ledger
	if st := Counted(fuse.NewDefaultRawFileSystem(), &l).Lookup(nil, &fuse.InHeader{}, "x", &fuse.EntryOut{}); st != fuse.ENOSYS {
		t.Errorf("the wrapped answer was replaced: %v, want ENOSYS", st)
	}
}

// TestLedgerConcurrent: counts from many goroutines add up (run with -race).
func TestLedgerConcurrent(t *testing.T) {
	var l Ledger
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				l.Add(OpLookup, 1)
				l.Add(OpGetattr, 1)
			}
		}()
	}
	wg.Wait()
	if c := l.Counts(); c["LOOKUP"] != 8000 || c["GETATTR"] != 8000 || l.Total() != 16000 {
		t.Errorf("counts %v, total %d", c, l.Total())
	}
	if Op(-1).String() != "UNKNOWN" || numOps.String() != "UNKNOWN" || OpStatx.String() != "STATX" {
		t.Error("Op.String out of range or misnamed")
	}
}

// BenchmarkLedgerAdd is what the ledger adds to each request (compare with
// the 13–50 µs of a FUSE round trip).
func BenchmarkLedgerAdd(b *testing.B) {
	var l Ledger
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Add(OpLookup, 1)
		}
	})
}
