package ctlsock

import (
	"encoding/binary"
	"fmt"
	"io"
)

// The operations a daemon answers.
const (
	OpDiff  = "diff"  // the upper layer's changes (Response.Changes)
	OpStats = "stats" // the daemon's figures (Response.Stats)
	OpTar   = "tar"   // the upper layer as an OCI layer, framed after the response line
)

// MaxRequest bounds a request line; the server reads no more.
const MaxRequest = 4096

// Request is what a client asks: one JSON line.
type Request struct {
	Op string `json:"op"` // OpDiff, OpStats or OpTar
}

// Response is the daemon's answer line. A non-empty Error means the request
// failed and nothing else follows.
type Response struct {
	Error   string   `json:"error,omitempty"`
	Changes []Change `json:"changes,omitempty"`
	Stats   *Stats   `json:"stats,omitempty"`
}

// Change is one line of `overlayfs diff`, as --json prints it.
type Change struct {
	Kind string `json:"kind"` // "A", "C" or "D"
	Path string `json:"path"`
}

// Stats is what `overlayfs stats` reports; byte counts are bytes.
type Stats struct {
	Mountpoint string `json:"mountpoint"`
	Upper      string `json:"upper"` // the --overlay2 spec
	// The upper layer.
	UpperInodes int64  `json:"upper_inodes"`
	UpperFiles  int64  `json:"upper_files"`      // regular files with upper data
	UpperBytes  uint64 `json:"upper_bytes"`      // data pages in use
	SizeLimit   uint64 `json:"size_limit_bytes"` // 0: unlimited
	// The filestore (or memfd) holding upper data.
	FilestoreAllocated uint64 `json:"filestore_allocated_bytes"`
	FilestoreOnDisk    uint64 `json:"filestore_on_disk_bytes"`
	// The daemon's memory, from /proc/self/status.
	VmRSS    uint64 `json:"vm_rss_bytes"`
	RssAnon  uint64 `json:"rss_anon_bytes"`
	RssFile  uint64 `json:"rss_file_bytes"`
	RssShmem uint64 `json:"rss_shmem_bytes"`
	// Work done.
	GoferRoundTrips uint64 `json:"gofer_round_trips"`
	// FuseRequests is how many FUSE requests the daemon answered (FORGET
	// excluded); FuseRequestsByOp splits them by opcode (LOOKUP, CREATE,
	// …; FORGET there counts nodes forgotten). Counted since the mount.
	FuseRequests     uint64            `json:"fuse_requests"`
	FuseRequestsByOp map[string]uint64 `json:"fuse_requests_by_op,omitempty"`
	DataCopyUps      int64             `json:"data_copy_ups"`
	MetaCopyUps      int64             `json:"metadata_copy_ups"`
	// FUSE passthrough of lower files: opens served, kernel inodes
	// retired by a copy-up, and whether it is off (disabled or refused).
	PassthroughOpens  uint64 `json:"passthrough_opens"`
	PassthroughRekeys uint64 `json:"passthrough_rekeys"`
	PassthroughOff    bool   `json:"passthrough_off"`
}

// maxFrame is the largest frame FrameWriter sends.
const maxFrame = 1 << 20

// FrameWriter cuts what is written to it into length-prefixed frames. After
// the first error every Write fails with it.
type FrameWriter struct {
	W   io.Writer
	err error
}

// Write sends p as one or more frames.
func (f *FrameWriter) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	for done := 0; done < len(p); {
		n := min(len(p)-done, maxFrame)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(n))
		if _, f.err = f.W.Write(hdr[:]); f.err != nil {
			return done, f.err
		}
		if _, f.err = f.W.Write(p[done : done+n]); f.err != nil {
			return done, f.err
		}
		done += n
	}
	return len(p), nil
}

// Err is the first write error, nil if none.
func (f *FrameWriter) Err() error { return f.err }

// End sends the zero-length frame that ends the stream.
func (f *FrameWriter) End() error {
	if f.err != nil {
		return f.err
	}
	_, f.err = f.W.Write([]byte{0, 0, 0, 0})
	return f.err
}

// ReadFrames copies a framed stream from r into w up to its end frame. A
// frame longer than FrameWriter sends is an error, never a huge allocation.
func ReadFrames(r io.Reader, w io.Writer) error {
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("read frame header: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			return nil
		}
		if n > maxFrame {
			return fmt.Errorf("frame of %d bytes: longer than %d", n, maxFrame)
		}
		if _, err := io.CopyN(w, r, int64(n)); err != nil {
			return fmt.Errorf("read frame of %d bytes: %w", n, err)
		}
	}
}
