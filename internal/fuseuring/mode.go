package fuseuring

import (
	"fmt"
	"os"
)

// Mode is the user's choice of transport: --fuse-uring auto|on|off.
type Mode int

const (
	// Off uses /dev/fuse. It is the zero value, so that a library user or
	// a test gets io_uring only by asking for it (the command line's
	// default is Auto).
	Off Mode = iota
	// Auto uses io_uring when the kernel offers it and /dev/fuse otherwise,
	// saying why (GoFuseMount.Reason).
	Auto
	// On requires io_uring and fails, naming the switch, without it.
	On
)

// ParseMode parses "auto", "on" or "off".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "auto":
		return Auto, nil
	case "on":
		return On, nil
	case "off", "":
		return Off, nil
	}
	return Off, fmt.Errorf("fuse-uring %q: want auto, on or off", s)
}

// String returns the flag value for m.
func (m Mode) String() string {
	switch m {
	case On:
		return "on"
	case Auto:
		return "auto"
	}
	return "off"
}

// resolve decides the transport for m before mounting. With Auto and no
// io_uring, it returns DevFuse and the reason; with On and no io_uring, an
// error naming what to change.
func resolve(m Mode) (Transport, string, error) {
	if m == Off {
		return DevFuse, "fuse-uring=off", nil
	}
	why := URingAvailable()
	if why == nil && os.Geteuid() != 0 {
		why = fmt.Errorf("the io_uring transport mounts /dev/fuse itself, which needs root")
	}
	if why == nil {
		return IOURing, "", nil
	}
	if m == On {
		return DevFuse, "", fmt.Errorf("fuse-uring=on: %w", why)
	}
	return DevFuse, why.Error(), nil
}
