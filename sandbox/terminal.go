package sandbox

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// terminal is a pseudo-terminal of the sandbox's own devpts, relayed to
// the caller's terminal, as systemd-nspawn and `docker run -t` do. The
// command gets its slave side as controlling terminal, so tty(1), ps(1)
// and job control see a terminal of the sandbox; the caller's terminal is
// never in the sandbox, so nothing inside can push input into it
// (TIOCSTI) or change its settings.
type terminal struct {
	master, slave *os.File
	out           *os.File      // the caller's terminal for output
	saved         *unix.Termios // the caller's settings, restored at the end
	done          chan struct{} // closed when the output relay ends
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// openTerminal allocates the pseudo-terminal (after pivot_root: /dev/pts is
// the sandbox's) with the caller's settings and window size, and puts the
// caller's terminal in raw mode.
func openTerminal() (*terminal, error) {
	mfd, err := unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("allocate a terminal: %w", err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(mfd)
		return nil, fmt.Errorf("unlock the terminal: %w", err)
	}
	// TIOCGPTPEER takes the slave's open flags as its argument.
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if e != 0 {
		unix.Close(mfd)
		return nil, fmt.Errorf("open the terminal's slave: %w", e)
	}
	sfd := int(r)
	t := &terminal{master: os.NewFile(uintptr(mfd), "pty-master"), slave: os.NewFile(uintptr(sfd), "pty-slave"),
		out: os.Stdout, done: make(chan struct{})}
	if !isTerminal(1) {
		t.out = os.Stderr
	}
	if tio, err := unix.IoctlGetTermios(0, unix.TCGETS); err == nil {
		_ = unix.IoctlSetTermios(sfd, unix.TCSETS, tio)
		saved := *tio
		t.saved = &saved
		raw := *tio
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Oflag &^= unix.OPOST
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cflag &^= unix.CSIZE | unix.PARENB
		raw.Cflag |= unix.CS8
		raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
		_ = unix.IoctlSetTermios(0, unix.TCSETS, &raw)
	}
	t.resize()
	return t, nil
}

// attach gives cmd the slave for each standard descriptor that is a
// terminal, and the slave as its controlling terminal.
func (t *terminal) attach(cmd *exec.Cmd) {
	cmd.Stdin = t.slave
	if isTerminal(1) {
		cmd.Stdout = t.slave
	}
	if isTerminal(2) {
		cmd.Stderr = t.slave
	}
	cmd.SysProcAttr.Setctty = true
	cmd.SysProcAttr.Ctty = 0
}

// started closes this process's slave and starts the relays.
func (t *terminal) started() {
	t.slave.Close()
	go func() { _, _ = io.Copy(t.master, os.Stdin) }()
	go func() {
		// Ends with EIO once every holder of the slave is gone.
		_, _ = io.Copy(t.out, t.master)
		close(t.done)
	}()
}

// resize copies the caller's window size to the pseudo-terminal.
func (t *terminal) resize() {
	if ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ); err == nil {
		_ = unix.IoctlSetWinsize(int(t.master.Fd()), unix.TIOCSWINSZ, ws)
	}
}

// drain waits (bounded) for the output relay to pass on what the command
// wrote before it ended.
func (t *terminal) drain() {
	select {
	case <-t.done:
	case <-time.After(5 * time.Second):
	}
}

// restore puts the caller's terminal settings back.
func (t *terminal) restore() {
	if t.saved != nil {
		_ = unix.IoctlSetTermios(0, unix.TCSETS, t.saved)
	}
}
