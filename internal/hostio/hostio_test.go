package hostio

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWholeTransfers(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	data := bytes.Repeat([]byte("0123456789"), 100000)
	if n, err := PwriteFull(fd, data, 4096); n != len(data) || err != nil {
		t.Fatalf("PwriteFull = %d, %v", n, err)
	}
	got := make([]byte, len(data))
	if n, err := PreadFull(fd, got, 4096); n != len(data) || err != nil || !bytes.Equal(got, data) {
		t.Fatalf("PreadFull = %d, %v (equal %v)", n, err, bytes.Equal(got, data))
	}
	// Past the end: what there is, and io.EOF.
	n, err := PreadFull(fd, make([]byte, 100), int64(4096+len(data)-10))
	if n != 10 || !errors.Is(err, io.EOF) {
		t.Errorf("read across the end = %d, %v; want 10, io.EOF", n, err)
	}
	if _, err := PreadFull(-1, got, 0); err == nil {
		t.Errorf("PreadFull on a bad fd succeeded")
	}
}
