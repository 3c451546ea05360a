package filestore

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ParseSize resolves a size= value to bytes: a decimal integer with an
// optional suffix k, m, g, t, p or e (either case, powers of 1024), or an
// integer percentage of the host's total memory ("50%"). The result is
// rounded up to whole 4 KiB pages. "" means unlimited (0).
//
// A size that comes to zero ("0", "0k", "0%") is an error. runsc's
// --overlay2 parser passes size=0 through to the sentry's tmpfs, which
// takes it as a budget of zero pages: an upper that holds no file data,
// where every write fails with ENOSPC. Linux tmpfs reads size=0 as no limit
// instead. Either reading surprises someone, and an upper that can hold
// nothing is never what is wanted (a mount with -o ro takes no changes),
// so the error says so and names the alternatives.
func ParseSize(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := parseSize(s)
	if err == nil && v == 0 {
		return 0, fmt.Errorf("invalid size %q: a zero budget leaves no room for file data (runsc's tmpfs takes size=0 as zero pages, every write failing with ENOSPC; Linux tmpfs as no limit): leave size= out for no limit, or give a size", s)
	}
	return v, err
}

// parseSize is ParseSize without the check for zero.
func parseSize(s string) (uint64, error) {
	num, mult := s, uint64(1)
	percent := false
	switch last := s[len(s)-1]; last {
	case '%':
		percent = true
		num = s[:len(s)-1]
	case 'k', 'K', 'm', 'M', 'g', 'G', 't', 'T', 'p', 'P', 'e', 'E':
		shift := 10 * (1 + strings.IndexByte("kmgtpe", lower(last)))
		mult = 1 << shift
		num = s[:len(s)-1]
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || num == "" || num[0] == '+' {
		return 0, fmt.Errorf("invalid size %q: want an integer with an optional k, m, g, t, p, e or %% suffix", s)
	}
	if percent {
		total, err := hostMemory()
		if err != nil {
			return 0, fmt.Errorf("size %q: %w", s, err)
		}
		hi, lo := bits.Mul64(total, n)
		if hi >= 100 {
			return 0, fmt.Errorf("invalid size %q: too large", s)
		}
		q, _ := bits.Div64(hi, lo, 100)
		if q > math.MaxUint64-4095 {
			return 0, fmt.Errorf("invalid size %q: too large", s)
		}
		return roundPage(q), nil
	}
	hi, v := bits.Mul64(n, mult)
	if hi != 0 || v > math.MaxUint64-4095 {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return roundPage(v), nil
}

func lower(c byte) byte { return c | 0x20 }

func roundPage(v uint64) uint64 { return (v + 4095) &^ 4095 }

// hostMemory returns the host's total RAM in bytes.
func hostMemory() (uint64, error) {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0, fmt.Errorf("sysinfo: %w", err)
	}
	return uint64(si.Totalram) * uint64(si.Unit), nil
}
