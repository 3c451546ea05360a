package lisafs

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// fuzzMIDs are the MIDs FuzzDecode picks from: every standard one, the
// extensions and one unknown.
func fuzzMIDs() []MID {
	var ms []MID
	for m := MIDError; m <= MIDMax+1; m++ {
		ms = append(ms, m)
	}
	return append(ms, MIDGetdents64Stat, MIDWalkOpenDir)
}

// FuzzDecode feeds arbitrary (mid, payload) pairs to the request and the
// response decoder of mid. Decoding must never panic; a failure must wrap
// EIO; a success must re-encode to the same length (only pad bytes may
// differ) and the re-encoding must be a fixed point.
func FuzzDecode(f *testing.F) {
	mids := fuzzMIDs()
	index := func(m MID) uint16 { return uint16(slices.Index(mids, m)) }
	for _, c := range wireCases() {
		f.Add(index(c.mid), c.msg.Append(nil))
	}
	f.Add(index(MIDWalk), []byte{})
	f.Add(index(MIDGetdents64), []byte{0xff, 0xff})
	f.Add(index(MIDWalkOpenDir), make([]byte, walkOpenDirRespHeaderSize+2))
	f.Fuzz(func(t *testing.T, mid uint16, payload []byte) {
		m := mids[int(mid)%len(mids)]
		for _, dec := range []Message{newRequest(m), newResponse(m)} {
			if dec == nil {
				continue
			}
			err := dec.Decode(payload)
			if err != nil {
				if !errors.Is(err, unix.EIO) {
					t.Fatalf("%v: error %v does not wrap EIO", m, err)
				}
				continue
			}
			re := dec.Append(nil)
			if len(re) != len(payload) {
				t.Fatalf("%v: decoded %d bytes but re-encodes to %d", m, len(payload), len(re))
			}
			if err := dec.Decode(re); err != nil {
				t.Fatalf("%v: re-encoding does not decode: %v", m, err)
			}
			if again := dec.Append(nil); !bytes.Equal(again, re) {
				t.Fatalf("%v: re-encoding is not a fixed point", m)
			}
		}
	})
}
