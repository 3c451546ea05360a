package lisafs

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// DecodeError reports a payload that does not decode as the expected message.
// It wraps unix.EIO, so errors.Is(err, unix.EIO) holds.
type DecodeError struct {
	What   string // message or structure name
	Reason string
	Len    int // payload length
}

// Error implements error.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("lisafs: decode %s (%d bytes): %s: %v", e.What, e.Len, e.Reason, unix.EIO)
}

// Unwrap returns unix.EIO.
func (e *DecodeError) Unwrap() error { return unix.EIO }

func decodeError(what, reason string, n int) error {
	return &DecodeError{What: what, Reason: reason, Len: n}
}

// ErrnoOf maps err to the errno to put on the wire or return to a caller:
// nil → 0, a unix.Errno found with errors.As → itself, anything else → EIO.
func ErrnoOf(err error) unix.Errno {
	if err == nil {
		return 0
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EIO
}
