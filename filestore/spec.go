package filestore

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Medium is where the upper layer's file data lives.
type Medium int

// The mediums of --overlay2.
const (
	// MediumNone means no overlay (the flag is "none" or the medium is empty).
	MediumNone Medium = iota
	// MediumMemory keeps upper data in a memfd.
	MediumMemory
	// MediumSelf keeps upper data in a named hidden file in the lower root.
	MediumSelf
	// MediumDir keeps upper data in an unlinked file in Spec.Dir.
	MediumDir
)

// String returns the medium's name as the flag spells it ("dir" for MediumDir).
func (m Medium) String() string {
	switch m {
	case MediumNone:
		return "none"
	case MediumMemory:
		return "memory"
	case MediumSelf:
		return "self"
	case MediumDir:
		return "dir"
	}
	return fmt.Sprintf("Medium(%d)", int(m))
}

// Spec is a parsed --overlay2 value. The zero value is "none".
type Spec struct {
	// Mount is "root" or "all", or "" for none.
	Mount string
	// Medium is the backing medium.
	Medium Medium
	// Dir is the absolute directory for MediumDir, as given.
	Dir string
	// Size is the size= value as given ("" = unlimited).
	Size string
	// Backing is how upper file data is kept: BackingStore ("", the
	// default: one memfile, a memfd or filestore file, for all files, as
	// gVisor does) or BackingFile (a host file per upper file, opened by
	// the kernel with FUSE passthrough; see Files).
	Backing string
}

// The values of backing=.
const (
	// BackingStore keeps every upper file's data in one memfile.
	BackingStore = ""
	// BackingFile gives every upper regular file a host file of its own.
	BackingFile = "file"
)

// Flag grammar words.
const (
	dirPrefix     = "dir="
	sizePrefix    = "size="
	backingPrefix = "backing="
)

func formatErr(v string) error {
	return fmt.Errorf("expected format is --overlay2={mount}:{medium}[,size={size}], got %q", v)
}

// Parse parses an --overlay2 value: "none" or
// "{root|all}:{memory|self|dir=/abs|/abs|}[,size=N][,backing=file|store]"
// (backing= is ours: runsc has no per-file backing). It reports malformed
// values with the same messages as gVisor's runsc. "/abs" is the older
// spelling of "dir=/abs" and is normalised to it; an empty medium ("root:")
// means no overlay. A size that cannot be resolved is rejected too.
func Parse(v string) (Spec, error) {
	if v == "none" {
		return Spec{}, nil
	}
	parts := strings.Split(v, ",")
	vs := strings.Split(parts[0], ":")
	if len(vs) != 2 {
		return Spec{}, formatErr(v)
	}
	var s Spec
	switch vs[0] {
	case "root", "all":
		s.Mount = vs[0]
	default:
		return Spec{}, fmt.Errorf("unexpected mount specifier for --overlay2: %q", vs[0])
	}
	switch med := vs[1]; {
	case med == "":
		s.Medium = MediumNone
	case med == "memory":
		s.Medium = MediumMemory
	case med == "self":
		s.Medium = MediumSelf
	case strings.HasPrefix(med, dirPrefix):
		dir := strings.TrimPrefix(med, dirPrefix)
		if !filepath.IsAbs(dir) {
			return Spec{}, fmt.Errorf("overlay host file directory should be an absolute path, got %q", dir)
		}
		s.Medium, s.Dir = MediumDir, dir
	case filepath.IsAbs(med):
		s.Medium, s.Dir = MediumDir, med
	default:
		return Spec{}, fmt.Errorf("unexpected medium: %q", med)
	}
	seen := map[string]bool{}
	for _, opt := range parts[1:] {
		key, val, _ := strings.Cut(opt, "=")
		if seen[key] {
			return Spec{}, formatErr(v)
		}
		seen[key] = true
		switch key + "=" {
		case sizePrefix:
			if _, err := ParseSize(val); err != nil {
				return Spec{}, err
			}
			s.Size = val
		case backingPrefix:
			switch val {
			case "store":
				s.Backing = BackingStore
			case BackingFile:
				s.Backing = BackingFile
			default:
				return Spec{}, fmt.Errorf("unexpected backing=%q: want file (a host file per upper file) or store (one filestore for all, the default)", val)
			}
		default:
			return Spec{}, formatErr(v)
		}
	}
	if s.Backing == BackingFile && s.Medium != MediumMemory && s.Medium != MediumDir {
		return Spec{}, fmt.Errorf("backing=file works with the memory and dir= mediums, not %v", s.Medium)
	}
	if s.Backing == BackingFile && s.Medium == MediumDir && s.Size != "" {
		return Spec{}, errDirSizeFiles
	}
	return s, nil
}

// String returns the canonical spelling: "none", or "{mount}:{medium}" with
// ",size=N" when a size is set. Parse(s.String()) returns s for every Spec
// that Parse produced.
func (s Spec) String() string {
	if s.Mount == "" {
		return "none"
	}
	var med string
	switch s.Medium {
	case MediumMemory:
		med = "memory"
	case MediumSelf:
		med = "self"
	case MediumDir:
		med = dirPrefix + s.Dir
	}
	out := s.Mount + ":" + med
	if s.Size != "" {
		out += "," + sizePrefix + s.Size
	}
	if s.Backing != BackingStore {
		out += "," + backingPrefix + s.Backing
	}
	return out
}

// Set parses v into s (pflag.Value); s is unchanged on error.
func (s *Spec) Set(v string) error {
	p, err := Parse(v)
	if err != nil {
		return err
	}
	*s = p
	return nil
}

// Type returns the flag's type name (pflag.Value).
func (s *Spec) Type() string { return "overlay2" }

// Enabled reports whether an overlay is configured (false for "none" and for
// an empty medium).
func (s Spec) Enabled() bool { return s.Mount != "" && s.Medium != MediumNone }

// SizeBytes resolves Size to a byte budget (see ParseSize); 0 means unlimited.
func (s Spec) SizeBytes() (uint64, error) { return ParseSize(s.Size) }

// DefaultSpec returns root:dir=<$TMPDIR, or /var/tmp when TMPDIR is unset or
// not absolute>.
func DefaultSpec() Spec {
	dir := os.Getenv("TMPDIR")
	if !filepath.IsAbs(dir) {
		dir = "/var/tmp"
	}
	return Spec{Mount: "root", Medium: MediumDir, Dir: dir}
}
