package bench

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Machine describes where the figures were measured.
type Machine struct {
	Kernel     string `json:"kernel"`
	CPU        string `json:"cpu"`
	CPUs       int    `json:"cpus"`
	MemTotal   int64  `json:"mem_total"`
	WorkDirFS  string `json:"work_dir_fs"`
	GoVersion  string `json:"go_version"`
	FuseOverFS string `json:"fuse_overlayfs_version,omitempty"`
}

func describeMachine(workDir string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		m.MemTotal = int64(si.Totalram) * int64(si.Unit)
	}
	m.WorkDirFS = mountOf(workDir)
	if out, err := exec.Command("fuse-overlayfs", "--version").CombinedOutput(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "fuse-overlayfs") || strings.HasPrefix(l, "fusermount3") {
				m.FuseOverFS = strings.TrimSpace(l)
				break
			}
		}
	}
	return m
}

// mountOf returns "fstype on device" for the mount holding path.
func mountOf(path string) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	best, desc := -1, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		mp := fields[4]
		if !(path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) || len(mp) <= best {
			continue
		}
		for i := 6; i+2 < len(fields); i++ {
			if fields[i] == "-" {
				best, desc = len(mp), fields[i+1]+" on "+fields[i+2]
				break
			}
		}
	}
	return desc
}
