package ctlsock

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func TestFramesRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, maxFrame - 1, maxFrame, maxFrame + 1, 3*maxFrame + 17} {
		data := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		var wire bytes.Buffer
		fw := &FrameWriter{W: &wire}
		if n, err := fw.Write(data); n != size || err != nil {
			t.Fatalf("size %d: Write = %d, %v", size, n, err)
		}
		if err := fw.End(); err != nil {
			t.Fatal(err)
		}
		wire.WriteString("tail")
		var got bytes.Buffer
		if err := ReadFrames(&wire, &got); err != nil {
			t.Fatalf("size %d: ReadFrames: %v", size, err)
		}
		if !bytes.Equal(got.Bytes(), data) {
			t.Errorf("size %d: got %d bytes back, different", size, got.Len())
		}
		if wire.String() != "tail" {
			t.Errorf("size %d: ReadFrames read past the end frame; left %q", size, wire.String())
		}
	}
}

func TestReadFramesRejectsBadStreams(t *testing.T) {
	frame := func(n uint32, body string) string {
		var h [4]byte
		binary.BigEndian.PutUint32(h[:], n)
		return string(h[:]) + body
	}
	for _, tc := range []struct {
		name, wire, want string
	}{
		{"no end frame", frame(3, "abc"), "frame header"},
		{"short body", frame(10, "abc"), "frame of 10 bytes"},
		{"huge frame", frame(1<<31, ""), "longer than"},
		{"torn header", "\x00\x00", "frame header"},
	} {
		err := ReadFrames(strings.NewReader(tc.wire), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ReadFrames = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

func TestCandidatesOrder(t *testing.T) {
	dir := t.TempDir()
	const mnt = "/some/mnt"
	for _, id := range []uint64{7, 12, 9} {
		p := PathsIn(dir, mnt, id)
		for _, f := range []string{p.Socket, p.Pid} {
			if err := writeEmpty(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Another mountpoint's files are never candidates.
	if err := writeEmpty(PathsIn(dir, "/other", 50).Socket); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range Candidates(dir, mnt, 9) {
		got = append(got, strings.TrimPrefix(p.Socket, dir+"/"+mountKey(mnt)+"."))
	}
	if want := "9.sock 12.sock 7.sock"; strings.Join(got, " ") != want {
		t.Errorf("Candidates = %v, want %s (the caller's mount, then newest first)", got, want)
	}
}
