package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"overlayfs/internal/procstatus"
)

// Memory is one reading of a medium's memory and upper-layer storage.
// Byte counts; zero when not applicable.
type Memory struct {
	// RSS and its split from /proc/PID/status of the daemon (VmRSS,
	// RssAnon, RssFile, RssShmem).
	RSS   int64 `json:"rss"`
	Anon  int64 `json:"rss_anon"`
	File  int64 `json:"rss_file"`
	Shmem int64 `json:"rss_shmem"`
	// HWM is the daemon's VmHWM (the kernel's own peak RSS).
	HWM int64 `json:"vm_hwm"`
	// GoferRSS is the VmRSS of the daemon's gofer child.
	GoferRSS int64 `json:"gofer_rss"`
	// UpperKind names where upper data lives: "memfd", "filestore",
	// "upperdir" (a directory on disk), "tmpfs", "files" (a private tmpfs
	// file per upper file, measured by the daemon's stats).
	UpperKind string `json:"upper_kind,omitempty"`
	// UpperSize is the upper file's st_size (memfd, filestore).
	UpperSize int64 `json:"upper_size"`
	// UpperBytes is what the upper data occupies: st_blocks*512 of the memfd
	// or filestore, du of an upper directory, used blocks of a tmpfs.
	UpperBytes int64 `json:"upper_bytes"`
}

// InRAM is the memory the medium holds: the daemon's RSS plus upper data
// kept in RAM (a memfd's pages are not mapped, so they are not in RSS; a
// tmpfs upper or per-file tmpfs files likewise).
func (m Memory) InRAM() int64 {
	if m.UpperKind == "memfd" || m.UpperKind == "tmpfs" || m.UpperKind == "files" {
		return m.RSS + m.UpperBytes
	}
	return m.RSS
}

// maxInto raises every field of p to at least m's.
func (p *Memory) maxInto(m Memory) {
	mx := func(a *int64, b int64) {
		if b > *a {
			*a = b
		}
	}
	mx(&p.RSS, m.RSS)
	mx(&p.Anon, m.Anon)
	mx(&p.File, m.File)
	mx(&p.Shmem, m.Shmem)
	mx(&p.HWM, m.HWM)
	mx(&p.GoferRSS, m.GoferRSS)
	mx(&p.UpperSize, m.UpperSize)
	mx(&p.UpperBytes, m.UpperBytes)
	if p.UpperKind == "" {
		p.UpperKind = m.UpperKind
	}
}

// readStatus fills the RSS fields from /proc/PID/status.
func readStatus(pid int, m *Memory) error {
	st, err := procstatus.Read(pid)
	if err != nil {
		return err
	}
	m.RSS, m.Anon, m.File, m.Shmem, m.HWM = st.RSS, st.Anon, st.File, st.Shmem, st.HWM
	return nil
}

// vmRSS returns a process's VmRSS in bytes, 0 if it cannot be read.
func vmRSS(pid int) int64 {
	var m Memory
	if pid <= 0 || readStatus(pid, &m) != nil {
		return 0
	}
	return m.RSS
}

// findUpperFD returns /proc/PID/fd/N of the daemon's upper-data file (the
// memfd or the filestore) and its kind, or "" if it has none.
func findUpperFD(pid int) (string, string) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", ""
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		target, err := os.Readlink(p)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(target, "/memfd:overlayfs-upper"):
			return p, "memfd"
		case strings.Contains(target, ".overlayfs.filestore."),
			strings.Contains(target, "overlayfs-filestore"),
			strings.HasSuffix(target, " (deleted)") && !strings.HasPrefix(target, "/memfd:"):
			var st syscall.Stat_t
			if syscall.Stat(p, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG {
				return p, "filestore"
			}
		}
	}
	return "", ""
}

// statUpper fills UpperSize and UpperBytes from an fd link found by
// findUpperFD.
func statUpper(fdPath string, m *Memory) {
	var st syscall.Stat_t
	if fdPath == "" || syscall.Stat(fdPath, &st) != nil {
		return
	}
	m.UpperSize = st.Size
	m.UpperBytes = st.Blocks * 512
}

// duBytes sums st_blocks*512 over a tree (hard links counted once).
func duBytes(root string) int64 {
	var total int64
	seen := map[[2]uint64]bool{}
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) != nil {
			return nil
		}
		key := [2]uint64{st.Dev, st.Ino}
		if seen[key] {
			return nil
		}
		seen[key] = true
		total += st.Blocks * 512
		return nil
	})
	return total
}

// fsUsedBytes returns the bytes in use on the file system holding path.
func fsUsedBytes(path string) int64 {
	var st syscall.Statfs_t
	if syscall.Statfs(path, &st) != nil {
		return 0
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// childPids lists the processes whose parent is pid.
func childPids(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// cmdline returns a process's arguments, nil if it is gone.
func cmdline(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// findProcess returns the first process whose arguments contain every one
// of words (as whole arguments), or 0.
func findProcess(words ...string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == os.Getpid() {
			continue
		}
		args := cmdline(n)
		all := len(args) > 0
		for _, w := range words {
			has := false
			for _, a := range args {
				has = has || a == w || strings.HasSuffix(a, "/"+w) && !strings.HasPrefix(w, "/")
			}
			all = all && has
		}
		if all {
			return n
		}
	}
	return 0
}
