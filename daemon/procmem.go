package daemon

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// procMemory reads the VmRSS, RssAnon, RssFile and RssShmem lines (in kB) of
// a /proc/PID/status file, in bytes.
func procMemory(r io.Reader) (rss, anon, file, shmem uint64) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		n *= 1024
		switch k {
		case "VmRSS":
			rss = n
		case "RssAnon":
			anon = n
		case "RssFile":
			file = n
		case "RssShmem":
			shmem = n
		}
	}
	return
}
