package filestore

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestParseValid(t *testing.T) {
	cases := []struct {
		in        string
		want      Spec
		canonical string
		enabled   bool
	}{
		{"none", Spec{}, "none", false},
		{"root:memory", Spec{Mount: "root", Medium: MediumMemory}, "root:memory", true},
		{"all:memory", Spec{Mount: "all", Medium: MediumMemory}, "all:memory", true},
		{"root:self", Spec{Mount: "root", Medium: MediumSelf}, "root:self", true},
		{"all:self", Spec{Mount: "all", Medium: MediumSelf}, "all:self", true},
		{"root:dir=/tmp", Spec{Mount: "root", Medium: MediumDir, Dir: "/tmp"}, "root:dir=/tmp", true},
		{"all:dir=/var/tmp/x/", Spec{Mount: "all", Medium: MediumDir, Dir: "/var/tmp/x/"}, "all:dir=/var/tmp/x/", true},
		{"root:/tmp", Spec{Mount: "root", Medium: MediumDir, Dir: "/tmp"}, "root:dir=/tmp", true},
		{"root:", Spec{Mount: "root"}, "root:", false},
		{"all:", Spec{Mount: "all"}, "all:", false},
		{"root:memory,size=1g", Spec{Mount: "root", Medium: MediumMemory, Size: "1g"}, "root:memory,size=1g", true},
		{"all:self,size=50%", Spec{Mount: "all", Medium: MediumSelf, Size: "50%"}, "all:self,size=50%", true},
		{"root:dir=/tmp,size=512M", Spec{Mount: "root", Medium: MediumDir, Dir: "/tmp", Size: "512M"}, "root:dir=/tmp,size=512M", true},
		{"root:memory,backing=file,size=1g", Spec{Mount: "root", Medium: MediumMemory, Size: "1g", Backing: BackingFile}, "root:memory,size=1g,backing=file", true},
		{"root:dir=/tmp,backing=file", Spec{Mount: "root", Medium: MediumDir, Dir: "/tmp", Backing: BackingFile}, "root:dir=/tmp,backing=file", true},
		{"root:memory,backing=store", Spec{Mount: "root", Medium: MediumMemory}, "root:memory", true},
		{"root:memory,size=", Spec{Mount: "root", Medium: MediumMemory}, "root:memory", true},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := Parse(c.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", c.in, err)
			}
			if got != c.want {
				t.Fatalf("Parse(%q) = %+v, want %+v", c.in, got, c.want)
			}
			if s := got.String(); s != c.canonical {
				t.Fatalf("String() = %q, want %q", s, c.canonical)
			}
			again, err := Parse(got.String())
			if err != nil || again != got {
				t.Fatalf("Parse(String()) = %+v, %v; want %+v", again, err, got)
			}
			if got.Enabled() != c.enabled {
				t.Fatalf("Enabled() = %v, want %v", got.Enabled(), c.enabled)
			}
		})
	}
	if (Spec{}).String() != "none" || (Spec{}).Enabled() {
		t.Fatal("zero Spec is not none")
	}
}

func TestParseErrors(t *testing.T) {
	const format = `expected format is --overlay2={mount}:{medium}[,size={size}], got `
	cases := []struct{ in, err string }{
		{"", format + `""`},
		{"memory", format + `"memory"`},
		{"root", format + `"root"`},
		{"root:memory:extra", format + `"root:memory:extra"`},
		{"root:dir=/a:b", format + `"root:dir=/a:b"`},
		{"root:memory,size=1g,size=2g", format + `"root:memory,size=1g,size=2g"`},
		{"root:memory,1g", format + `"root:memory,1g"`},
		{"root:memory,sz=1g", format + `"root:memory,sz=1g"`},
		{"none,size=1g", format + `"none,size=1g"`},
		{"none:memory", `unexpected mount specifier for --overlay2: "none"`},
		{"sub:memory", `unexpected mount specifier for --overlay2: "sub"`},
		{":memory", `unexpected mount specifier for --overlay2: ""`},
		{"ROOT:memory", `unexpected mount specifier for --overlay2: "ROOT"`},
		{"root:disk", `unexpected medium: "disk"`},
		{"root:Memory", `unexpected medium: "Memory"`},
		{"root:none", `unexpected medium: "none"`},
		{"root:tmp/dir", `unexpected medium: "tmp/dir"`},
		{"root:dir=tmp", `overlay host file directory should be an absolute path, got "tmp"`},
		{"root:dir=", `overlay host file directory should be an absolute path, got ""`},
		{"root:memory,size=abc", `invalid size "abc": want an integer with an optional k, m, g, t, p, e or % suffix`},
		{"root:memory,size=1x", `invalid size "1x": want an integer with an optional k, m, g, t, p, e or % suffix`},
		{"root:memory,size=-1", `invalid size "-1": want an integer with an optional k, m, g, t, p, e or % suffix`},
		{"root:memory,size=k", `invalid size "k": want an integer with an optional k, m, g, t, p, e or % suffix`},
		{"root:memory,size=99999999e", `invalid size "99999999e": too large`},
		{"root:memory,backing=file,backing=file", format + `"root:memory,backing=file,backing=file"`},
		{"root:memory,backing=disk", `unexpected backing="disk": want file (a host file per upper file) or store (one filestore for all, the default)`},
		{"root:self,backing=file", `backing=file works with the memory and dir= mediums, not self`},
		{"root:dir=/tmp,size=1g,backing=file", errDirSizeFiles.Error()},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			_, err := Parse(c.in)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", c.in)
			}
			if err.Error() != c.err {
				t.Fatalf("Parse(%q) error\n got %q\nwant %q", c.in, err.Error(), c.err)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	mem, err := hostMemory()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		in   string
		want uint64
	}{
		{"", 0},
		{"1", 4096},
		{"4096", 4096},
		{"4097", 8192},
		{"1k", 4096},
		{"4K", 4096},
		{"1m", 1 << 20},
		{"1M", 1 << 20},
		{"2g", 2 << 30},
		{"1t", 1 << 40},
		{"1p", 1 << 50},
		{"1e", 1 << 60},
		{"100%", roundPage(mem)},
		{"50%", roundPage(mem / 2)},
	}
	for _, c := range cases {
		got, err := ParseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, zero := range []string{"0", "0k", "0%", "00"} {
		if v, err := ParseSize(zero); err == nil || !strings.Contains(err.Error(), "zero budget") {
			t.Errorf("ParseSize(%q) = %d, %v; want an error explaining a zero budget", zero, v, err)
		}
	}
	for _, bad := range []string{"%", "1.5g", "+1", " 1", "1 g", "1kb", "16e", "18446744073709551615"} {
		if v, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", bad, v)
		}
	}
	s, err := Parse("root:memory,size=2m")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.SizeBytes(); err != nil || n != 2<<20 {
		t.Fatalf("SizeBytes = %d, %v", n, err)
	}
}

func TestFlagValue(t *testing.T) {
	spec := DefaultSpec()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.Var(&spec, "overlay2", "overlay config")
	if err := fs.Parse([]string{"--overlay2=all:self,size=1m"}); err != nil {
		t.Fatal(err)
	}
	if spec != (Spec{Mount: "all", Medium: MediumSelf, Size: "1m"}) {
		t.Fatalf("flag set %+v", spec)
	}
	if err := fs.Parse([]string{"--overlay2=bogus"}); err == nil {
		t.Fatal("bad flag value accepted")
	}
	if spec.Mount != "all" {
		t.Fatal("failed Set changed the value")
	}
	if spec.Type() != "overlay2" {
		t.Fatalf("Type() = %q", spec.Type())
	}
}

func TestDefaultSpec(t *testing.T) {
	t.Setenv("TMPDIR", "/some/tmp")
	if s := DefaultSpec(); s.String() != "root:dir=/some/tmp" {
		t.Fatalf("DefaultSpec with TMPDIR = %q", s)
	}
	t.Setenv("TMPDIR", "")
	if s := DefaultSpec(); s.String() != "root:dir=/var/tmp" {
		t.Fatalf("DefaultSpec without TMPDIR = %q", s)
	}
}
