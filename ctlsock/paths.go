package ctlsock

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is the runtime directory of the control sockets and pid files of the
// calling user's mounts: /run/overlayfs for root, else
// $XDG_RUNTIME_DIR/overlayfs, else $TMPDIR/overlayfs-UID.
func Dir() string {
	if os.Geteuid() == 0 {
		return "/run/overlayfs"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "overlayfs")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("overlayfs-%d", os.Geteuid()))
}

// MountID is the ID of the mount whose root is at mnt, as seen from the
// calling process: the unique, never reused ID where the kernel has one
// (Linux 6.8), else the classic mount ID. It does not ask the file system
// (AT_STATX_DONT_SYNC), so it also works on a mount whose daemon died.
func MountID(mnt string) (uint64, error) {
	var stx unix.Statx_t
	flags := unix.AT_SYMLINK_NOFOLLOW | unix.AT_STATX_DONT_SYNC
	if err := unix.Statx(unix.AT_FDCWD, mnt, flags, unix.STATX_MNT_ID_UNIQUE, &stx); err != nil {
		return 0, fmt.Errorf("mount ID of %s: %w", mnt, err)
	}
	if stx.Mask&(unix.STATX_MNT_ID_UNIQUE|unix.STATX_MNT_ID) == 0 {
		if err := unix.Statx(unix.AT_FDCWD, mnt, flags, unix.STATX_MNT_ID, &stx); err != nil {
			return 0, fmt.Errorf("mount ID of %s: %w", mnt, err)
		}
		if stx.Mask&unix.STATX_MNT_ID == 0 {
			return 0, fmt.Errorf("mount ID of %s: the kernel reports none", mnt)
		}
	}
	return stx.Mnt_id, nil
}

// Paths are the runtime files of the daemon serving one mount.
type Paths struct {
	Socket string // the control socket
	Pid    string // the daemon's pid, one decimal line
}

// mountKey names the files of every mount ever made on mnt.
func mountKey(mnt string) string {
	sum := sha256.Sum256([]byte(mnt))
	return hex.EncodeToString(sum[:8])
}

// PathsIn are the runtime files in dir of the daemon of mount id on mnt.
func PathsIn(dir, mnt string, id uint64) Paths {
	base := filepath.Join(dir, mountKey(mnt)+"."+strconv.FormatUint(id, 10))
	return Paths{Socket: base + ".sock", Pid: base + ".pid"}
}

// Candidates lists the runtime files in dir of every daemon that served, or
// serves, a mount on mnt: the mount with ID id first (the one the caller
// sees), then the others by descending mount ID, newest first. A mount
// reached through another mount namespace has another ID there, which is
// why the others are listed at all.
func Candidates(dir, mnt string, id uint64) []Paths {
	out := []Paths{PathsIn(dir, mnt, id)}
	matches, _ := filepath.Glob(filepath.Join(dir, mountKey(mnt)+".*"))
	seen := map[uint64]bool{id: true}
	var ids []uint64
	for _, m := range matches {
		// key.ID.sock or key.ID.pid
		parts := strings.Split(filepath.Base(m), ".")
		if len(parts) != 3 {
			continue
		}
		v, err := strconv.ParseUint(parts[1], 10, 64)
		if err == nil && !seen[v] {
			seen[v] = true
			ids = append(ids, v)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] > ids[j] })
	for _, v := range ids {
		out = append(out, PathsIn(dir, mnt, v))
	}
	return out
}

// ReadPid reads a pid file; 0 if it is missing or unreadable.
func ReadPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// DaemonPid is the pid of the daemon serving the mount on mnt (in Dir), 0
// if none is known: the pid of the first of Candidates whose process is
// alive.
func DaemonPid(mnt string) int {
	id, err := MountID(mnt)
	if err != nil {
		return 0
	}
	for _, p := range Candidates(Dir(), mnt, id) {
		if pid := ReadPid(p.Pid); ProcessAlive(pid) {
			return pid
		}
	}
	return 0
}

// ProcessAlive reports whether pid runs and is not a zombie waiting for a
// parent that may reap it late.
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}
