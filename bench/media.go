package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
)

// mounted is one medium ready for a workload: where to run it and how to
// measure and undo it.
type mounted struct {
	medium string
	root   string // where the workload runs
	fuse   bool   // the root is a FUSE mount whose page cache fadvise drops
	pid    int    // the daemon (0: none)
	gofer  int    // the daemon's gofer (0: none)

	upperFD   string // /proc/PID/fd/N of the memfd or filestore
	upperKind string
	upperDir  string // fuse-overlayfs upper directory, or the tmpfs of kernel-overlay

	undo func() error // unmounts; nil for the host
	bin  string       // the overlayfs binary, for `overlayfs stats` (own media only)
}

// daemonCounts is what the benchmark reads from a daemon's stats.
type daemonCounts struct {
	GoferRoundTrips int64            // -1: unknown
	FuseRequests    int64            // -1: unknown
	ByOp            map[string]int64 // FUSE requests by opcode
}

// counts asks the daemon (`overlayfs stats --json MNT`) how many gofer
// round trips it made and FUSE requests it answered so far; -1 when it
// cannot tell (not an overlayfs medium, or a daemon without the figure).
func (m *mounted) counts() daemonCounts {
	c := daemonCounts{GoferRoundTrips: -1, FuseRequests: -1}
	if m.bin == "" {
		return c
	}
	out, err := exec.Command(m.bin, "stats", "--json", m.root).Output()
	if err != nil {
		return c
	}
	var st struct {
		RoundTrips *int64           `json:"gofer_round_trips"`
		Requests   *int64           `json:"fuse_requests"`
		ByOp       map[string]int64 `json:"fuse_requests_by_op"`
	}
	if json.Unmarshal(out, &st) != nil {
		return c
	}
	if st.RoundTrips != nil {
		c.GoferRoundTrips = *st.RoundTrips
	}
	if st.Requests != nil {
		c.FuseRequests = *st.Requests
		c.ByOp = st.ByOp
	}
	return c
}

// upperBytes asks the daemon what its upper data occupies (a per-file
// upper has no single file to stat); 0 when it cannot tell.
func (m *mounted) upperBytes() int64 {
	out, err := exec.Command(m.bin, "stats", "--json", m.root).Output()
	if err != nil {
		return 0
	}
	var st struct {
		UpperBytes int64 `json:"upper_bytes"`
	}
	if json.Unmarshal(out, &st) != nil {
		return 0
	}
	return st.UpperBytes
}

// sample reads the medium's memory now. Walking an upper directory is
// costly, so it is done only when full is set.
func (m *mounted) sample(full bool) Memory {
	var mem Memory
	if m.pid > 0 {
		_ = readStatus(m.pid, &mem)
		mem.GoferRSS = vmRSS(m.gofer)
	}
	mem.UpperKind = m.upperKind
	switch m.upperKind {
	case "memfd", "filestore":
		statUpper(m.upperFD, &mem)
	case "tmpfs":
		mem.UpperBytes = fsUsedBytes(m.upperDir)
	case "upperdir":
		if full {
			mem.UpperBytes = duBytes(m.upperDir)
		}
	case "files":
		if full {
			mem.UpperBytes = m.upperBytes()
		}
	}
	return mem
}

// unmount undoes the mount; it is safe to call more than once.
func (m *mounted) unmount() error {
	if m.undo == nil {
		return nil
	}
	undo := m.undo
	m.undo = nil
	return undo()
}

// overlaySpec is the --overlay2 value of one of overlayfs's own media.
func overlaySpec(medium, filestoreDir string) string {
	switch medium {
	case MediumMemory, MediumMemoryURing, MediumMemoryShared, MediumMemoryNotify:
		return "root:memory"
	case MediumMemoryFile:
		return "root:memory,backing=file"
	case MediumDir:
		return "root:dir=" + filestoreDir
	case MediumSelf:
		return "root:self"
	}
	return "none"
}

// mountMedium mounts medium over the lower directories lowers (top-most
// first; the host medium takes one) inside runDir (a fresh, empty
// directory owned by this run).
func mountMedium(ctx context.Context, bin, medium string, lowers []string, runDir, filestoreDir string) (*mounted, error) {
	switch medium {
	case MediumHost:
		return &mounted{medium: medium, root: lowers[0]}, nil
	case MediumKernel:
		return mountKernel(lowerdirOption(lowers), runDir)
	case MediumFuseOverlayfs:
		return mountFuseOverlayfs(ctx, lowerdirOption(lowers), runDir)
	}
	return mountOverlayfs(ctx, bin, medium, lowers, runDir, filestoreDir)
}

// lowerdirOption is the lowerdir= value of a stack for Linux overlayfs and
// fuse-overlayfs: the directories, top-most first, separated by ':', with
// ':' and '\' inside a name escaped by '\'.
func lowerdirOption(lowers []string) string {
	esc := make([]string, len(lowers))
	for i, l := range lowers {
		esc[i] = strings.NewReplacer(`\`, `\\`, ":", `\:`).Replace(l)
	}
	return strings.Join(esc, ":")
}

func mountOverlayfs(ctx context.Context, bin, medium string, lowers []string, runDir, filestoreDir string) (*mounted, error) {
	mnt := filepath.Join(runDir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(runDir, "daemon.log")
	spec := overlaySpec(medium, filestoreDir)
	uring := "off"
	if medium == MediumMemoryURing {
		uring = "on"
	}
	access := "exclusive"
	switch medium {
	case MediumMemoryShared:
		access = "shared"
	case MediumMemoryNotify:
		access = "notify"
	}
	args := []string{"mount", "--overlay2", spec, "--fuse-uring", uring, "--file-access", access, "--log", logPath}
	if len(lowers) == 1 {
		args = append(args, lowers[0], mnt)
	} else {
		// --lower needs no escaping of ':' in a name.
		for _, l := range lowers {
			args = append(args, "--lower", l)
		}
		args = append(args, mnt)
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("overlayfs mount --overlay2 %s --fuse-uring %s: %w: %s", spec, uring, err, mountFailure(string(out), string(log)))
	}
	m := &mounted{medium: medium, root: mnt, fuse: true, bin: bin}
	m.undo = func() error { return unmountOverlayfs(bin, mnt, logPath) }
	m.pid = ctlsock.DaemonPid(mnt)
	if m.pid == 0 {
		m.pid = findProcess("mount", mnt)
	}
	if m.pid == 0 {
		_ = m.unmount()
		return nil, fmt.Errorf("mounted %s but cannot find its daemon's pid", mnt)
	}
	for _, c := range childPids(m.pid) {
		for _, a := range cmdline(c) {
			if a == "gofer" {
				m.gofer = c
			}
		}
	}
	m.upperFD, m.upperKind = findUpperFD(m.pid)
	if medium == MediumMemoryFile {
		m.upperFD, m.upperKind = "", "files"
	}
	return m, nil
}

// unmountOverlayfs runs `overlayfs umount`, retrying while the mount is busy
// (a killed workload's children may linger), and detaches it lazily as a
// last resort, which it reports as an error.
func unmountOverlayfs(bin, mnt, logPath string) error {
	var out []byte
	var err error
	for i := 0; i < 50; i++ {
		out, err = exec.Command(bin, "umount", mnt).CombinedOutput()
		if err == nil {
			return nil
		}
		if !strings.Contains(string(out), "busy") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	derr := unix.Unmount(mnt, unix.MNT_DETACH)
	log, _ := os.ReadFile(logPath)
	return fmt.Errorf("overlayfs umount %s: %w: %s (lazy detach: %v) %s", mnt, err, strings.TrimSpace(string(out)), derr, daemonLog(string(log)))
}

// mountKernel mounts Linux overlayfs over lowerdir (an option value) with
// its upper and work directories on a fresh tmpfs.
func mountKernel(lowerdir, runDir string) (*mounted, error) {
	t := filepath.Join(runDir, "tmpfs")
	mnt := filepath.Join(runDir, "mnt")
	for _, d := range []string{t, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := unix.Mount("tmpfs", t, "tmpfs", 0, "mode=0755"); err != nil {
		return nil, fmt.Errorf("mount tmpfs on %s: %w", t, err)
	}
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(t, d), 0o755); err != nil {
			_ = unix.Unmount(t, unix.MNT_DETACH)
			return nil, err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", lowerdir, t, t)
	if err := unix.Mount("overlay", mnt, "overlay", 0, opts); err != nil {
		_ = unix.Unmount(t, unix.MNT_DETACH)
		return nil, fmt.Errorf("mount -t overlay -o %s: %w", opts, err)
	}
	m := &mounted{medium: MediumKernel, root: mnt, upperKind: "tmpfs", upperDir: t}
	m.undo = func() error {
		err := unmountRetry(mnt)
		return errors.Join(err, unmountRetry(t))
	}
	return m, nil
}

// unmountRetry unmounts a kernel mount, waiting while it is busy, and
// detaches it lazily as a last resort (reported as an error).
func unmountRetry(mnt string) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = unix.Unmount(mnt, 0); err == nil || err != unix.EBUSY {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err == nil {
		return nil
	}
	derr := unix.Unmount(mnt, unix.MNT_DETACH)
	return fmt.Errorf("unmount %s: %w (lazy detach: %v)", mnt, err, derr)
}

// mountFuseOverlayfs mounts fuse-overlayfs over lowerdir (an option value)
// with its upper directory on the work disk (the counterpart of a
// filestore).
func mountFuseOverlayfs(ctx context.Context, lowerdir, runDir string) (*mounted, error) {
	bin, err := exec.LookPath("fuse-overlayfs")
	if err != nil {
		return nil, fmt.Errorf("fuse-overlayfs is not installed (apt install fuse-overlayfs)")
	}
	upper := filepath.Join(runDir, "upper")
	work := filepath.Join(runDir, "work")
	mnt := filepath.Join(runDir, "mnt")
	for _, d := range []string{upper, work, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lowerdir, upper, work)
	out, err := exec.CommandContext(ctx, bin, "-o", opts, mnt).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("fuse-overlayfs -o %s: %w: %s", opts, err, strings.TrimSpace(string(out)))
	}
	m := &mounted{medium: MediumFuseOverlayfs, root: mnt, fuse: true, upperKind: "upperdir", upperDir: upper}
	m.pid = findProcess("fuse-overlayfs", mnt)
	pid := m.pid
	m.undo = func() error {
		if err := unmountRetry(mnt); err != nil {
			return err
		}
		for deadline := time.Now().Add(10 * time.Second); ctlsock.ProcessAlive(pid); {
			if time.Now().After(deadline) {
				return fmt.Errorf("fuse-overlayfs (pid %d) still runs 10s after unmounting %s", pid, mnt)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	}
	return m, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// mountFailure is what a failed `overlayfs mount` said, followed by the
// last lines of its daemon's log that it did not already say (the daemon
// logs the error it reports).
func mountFailure(out, log string) string {
	out = strings.TrimSpace(out)
	var fresh []string
	for _, l := range strings.Split(log, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.Contains(out, l) {
			fresh = append(fresh, l)
		}
	}
	if d := daemonLog(strings.Join(fresh, "\n")); d != "" {
		return out + " " + d
	}
	return out
}

func daemonLog(s string) string {
	if t := lastLines(s, 5); t != "" {
		return "(daemon log: " + t + ")"
	}
	return ""
}
