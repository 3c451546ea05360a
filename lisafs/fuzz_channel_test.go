package lisafs

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzChannelDatagram writes an arbitrary datagram (any claimed length,
// header and payload) into a channel window of our server: the server
// either answers with a well-formed reply or ends that channel; it never
// panics, hangs or takes the socket down with it.
func FuzzChannelDatagram(f *testing.F) {
	frame := func(mid MID, numFDs byte, payload []byte) []byte {
		b := binary.LittleEndian.AppendUint16(nil, uint16(mid))
		return append(append(b, numFDs, 0), payload...)
	}
	f.Add(uint32(12), frame(MIDFStat, 0, (&FDReq{FD: 1}).Append(nil)))
	f.Add(uint32(4), frame(MIDChannel, 0, nil))
	f.Add(uint32(0), []byte{})
	f.Add(uint32(3), []byte{1, 0, 0})
	f.Add(uint32(1<<31), frame(MIDFStat, 0, nil))
	f.Add(uint32(20), frame(MIDWalk, 9, (&WalkReq{DirFD: 1, Path: names("..")}).Append(nil)))
	f.Fuzz(func(t *testing.T, claimed uint32, datagram []byte) {
		srv := startServer(t, "", false)
		p := dial(t, srv)
		p.mount()
		rc := openRawChannel(t, p)
		copy(rc.ep.data(), datagram)
		if err := rc.ep.send(claimed); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(bound)
		for {
			s := atomic.LoadUint32(rc.ep.state())
			if s == stateShutdown {
				break // the server ended this channel
			}
			if s == stateClientActive {
				n := atomic.LoadUint32(rc.ep.dataLenP())
				if n < channelHeaderSize || n > rc.ep.dataCap() {
					t.Fatalf("reply of %d bytes", n)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no reply and no shutdown after %v", bound)
			}
			time.Sleep(time.Millisecond)
		}
		// The socket still serves.
		var st Statx
		p.must(MIDFStat, &FDReq{FD: 1}, &st)
	})
}
