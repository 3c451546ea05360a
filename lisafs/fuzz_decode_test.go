package lisafs

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzDecode feeds arbitrary (mid, payload) pairs to the request and the
// response decoder of mid. Decoding must never panic; a failure must wrap
// EIO; a success must re-encode to the same length (only pad bytes may
// differ) and the re-encoding must be a fixed point.
func FuzzDecode(f *testing.F) {
	for _, c := range wireCases() {
		f.Add(uint16(c.mid), c.msg.Append(nil))
	}
	f.Add(uint16(MIDWalk), []byte{})
	f.Add(uint16(MIDGetdents64), []byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, mid uint16, payload []byte) {
		m := MID(mid % (uint16(MIDMax) + 2)) // mostly standard MIDs, plus one unknown
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
