package main

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fuseuring"
)

// runVersion prints the version, the commit and the Go version the binary
// was built from, and the kernel features overlayfs uses as this machine
// offers them. It only reads: the io_uring switch is reported, never set.
func runVersion(args []string) error {
	if len(args) > 0 {
		if args[0] == "-h" || args[0] == "--help" {
			fmt.Fprint(os.Stderr, "Usage: overlayfs version\n\n"+
				"Prints the version, the commit and the Go version overlayfs was built from, and the\n"+
				"kernel features it uses as this machine offers them: FUSE passthrough and FUSE over\n"+
				"io_uring, with the state of the io_uring switch (read, never changed).\n")
			return pflag.ErrHelp
		}
		return exitError{code: 2, msg: fmt.Sprintf("version takes no arguments, got %q", args)}
	}
	fmt.Print(versionReport())
	return nil
}

// versionReport is what `overlayfs version` prints.
func versionReport() string {
	var b strings.Builder
	version, commit := "devel", "unknown (built without VCS stamping: -buildvcs=false, or not from a git checkout)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			version = v
		}
		var rev, at, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			commit = rev
			if at != "" {
				commit += " (" + at + ")"
			}
			if modified == "true" {
				commit += ", with uncommitted changes"
			}
		}
	}
	fmt.Fprintf(&b, "overlayfs %s\n", version)
	fmt.Fprintf(&b, "commit       %s\n", commit)
	fmt.Fprintf(&b, "go           %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	var u unix.Utsname
	release := "unknown"
	if unix.Uname(&u) == nil {
		release = unix.ByteSliceToString(u.Release[:])
	}
	fmt.Fprintf(&b, "kernel       Linux %s\n", release)
	config := kernelConfig()
	fmt.Fprintf(&b, "passthrough  %s\n", passthroughFeature(release, config))
	fmt.Fprintf(&b, "io_uring     %s\n", uringFeature(config))
	return b.String()
}

// kernelConfig reads the running kernel's configuration from
// /proc/config.gz, or nil when it is not offered.
func kernelConfig() map[string]string {
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return nil
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil
	}
	cfg := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(zr, 16<<20))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_FUSE") {
			cfg[k] = v
		}
	}
	return cfg
}

// kernelAtLeast reports whether release (uname -r) is major.minor or later.
func kernelAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(release, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

// passthroughFeature describes FUSE passthrough on this kernel (Linux 6.9+,
// CONFIG_FUSE_PASSTHROUGH; the daemon also needs CAP_SYS_ADMIN).
func passthroughFeature(release string, config map[string]string) string {
	switch {
	case !kernelAtLeast(release, 6, 9):
		return "not available (needs Linux 6.9+): lower files are read through the daemon"
	case config == nil:
		return "Linux 6.9+ (kernel config not readable to check CONFIG_FUSE_PASSTHROUGH); used when the daemon has CAP_SYS_ADMIN"
	case config["CONFIG_FUSE_PASSTHROUGH"] == "y":
		return "available (CONFIG_FUSE_PASSTHROUGH=y); used when the daemon has CAP_SYS_ADMIN"
	}
	return "not built into this kernel (CONFIG_FUSE_PASSTHROUGH is not set): lower files are read through the daemon"
}

// uringFeature describes FUSE over io_uring on this kernel (Linux 6.14+,
// CONFIG_FUSE_IO_URING) and the state of its switch, without changing it.
func uringFeature(config map[string]string) string {
	b, err := os.ReadFile("/sys/module/fuse/parameters/enable_uring")
	if err != nil {
		if config != nil && config["CONFIG_FUSE_IO_URING"] == "y" {
			return "built in (CONFIG_FUSE_IO_URING=y), but the fuse module's enable_uring switch is not readable"
		}
		return "not available (needs Linux 6.14+ with CONFIG_FUSE_IO_URING): mounts use /dev/fuse"
	}
	state := strings.TrimSpace(string(b))
	if why := fuseuring.URingAvailable(); why != nil {
		return fmt.Sprintf("built in; switch %s (/sys/module/fuse/parameters/enable_uring=%s): mounts use /dev/fuse (%v)", onOff(state), state, why)
	}
	return fmt.Sprintf("built in; switch on (/sys/module/fuse/parameters/enable_uring=%s): --fuse-uring auto uses it for root's mounts", state)
}

func onOff(v string) string {
	if v == "Y" || v == "1" {
		return "on"
	}
	return "off"
}
