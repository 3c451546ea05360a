package overlay

import (
	"errors"
	"io"

	"golang.org/x/sys/unix"
)

func asErrno(err error, e *unix.Errno) bool { return errors.As(err, e) }

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
