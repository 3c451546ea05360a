// Package procstatus reads the memory lines of a /proc/PID/status file.
package procstatus

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Memory is what /proc/PID/status reports of a process's memory, in bytes.
// A line the file does not have leaves its field 0.
type Memory struct {
	RSS   int64 // VmRSS
	Anon  int64 // RssAnon
	File  int64 // RssFile
	Shmem int64 // RssShmem
	HWM   int64 // VmHWM, the kernel's own peak RSS
}

// Read reads the status file of process pid ("self": 0).
func Read(pid int) (Memory, error) {
	p := "/proc/self/status"
	if pid != 0 {
		p = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return Memory{}, fmt.Errorf("read %s: %w", p, err)
	}
	return Parse(b)
}

// Parse reads the kB lines Memory carries from the text of a status file;
// other lines are skipped, and a known line without a number is an error.
func Parse(b []byte) (Memory, error) {
	var m Memory
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &m.RSS
		case "RssAnon":
			dst = &m.Anon
		case "RssFile":
			dst = &m.File
		case "RssShmem":
			dst = &m.Shmem
		case "VmHWM":
			dst = &m.HWM
		default:
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return m, fmt.Errorf("status field %s is empty", k)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("status field %s: %w", k, err)
		}
		*dst = n * 1024
	}
	return m, sc.Err()
}
