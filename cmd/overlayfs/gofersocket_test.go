package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"overlayfs/internal/mounttest"
)

// mountinfoSource returns the source column of the mount on mnt.
func mountinfoSource(t *testing.T, mnt string) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || unescapeMount(fields[4]) != mnt {
			continue
		}
		for i := 6; i+2 < len(fields); i++ {
			if fields[i] == "-" {
				return unescapeMount(fields[i+2])
			}
		}
	}
	t.Fatalf("%s is not in /proc/self/mountinfo", mnt)
	return ""
}

// TestMountGoferSocketLowerDir mounts over a running gofer: LOWERDIR may
// be left out (the socket is then the source), the gofer's own directory
// is accepted and shown, and any other directory is refused without a
// mount; the self medium needs LOWERDIR.
func TestMountGoferSocketLowerDir(t *testing.T) {
	lower := cliLower(t)
	mounttest.GuardLower(t, lower)
	sock := filepath.Join(t.TempDir(), "gofer.sock")
	faultStartGofer(t, lower, sock)
	cases := []struct {
		name       string
		args       []string // before MOUNTPOINT
		wantSource string   // "" means the mount must fail
		wantErr    string
	}{
		{name: "no LOWERDIR", args: []string{"--overlay2=root:memory"}, wantSource: sock},
		{name: "the gofer's LOWERDIR", args: []string{"--overlay2=root:memory", lower}, wantSource: lower},
		{name: "another LOWERDIR", args: []string{"--overlay2=root:memory", t.TempDir()}, wantErr: "is not the directory the gofer serves"},
		{name: "self without LOWERDIR", args: []string{"--overlay2=root:self"}, wantErr: "the self medium keeps its filestore in LOWERDIR"},
		{name: "none without LOWERDIR", args: []string{"--overlay2=none", "-o", "ro"}, wantSource: sock},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mnt := t.TempDir()
			cliEnsureUnmounted(t, mnt, nil)
			args := append([]string{"mount", "--log", filepath.Join(t.TempDir(), "log"), "--gofer-socket", sock}, c.args...)
			r := cliRun(t, append(args, mnt)...)
			if c.wantSource == "" {
				if r.code == 0 || !strings.Contains(r.stderr, c.wantErr) {
					t.Errorf("exit %d, %q: want a failure saying %q", r.code, r.stderr, c.wantErr)
				}
				if n := cliMounts(t, mnt); n != 0 {
					t.Errorf("a refused mount left %d mounts", n)
				}
				return
			}
			if r.code != 0 {
				t.Fatalf("mount: exit %d: %s", r.code, r.stderr)
			}
			defer func() {
				if r := cliRun(t, "umount", mnt); r.code != 0 {
					t.Errorf("umount: %s", r.stderr)
				}
			}()
			if got := mountinfoSource(t, mnt); got != c.wantSource {
				t.Errorf("source %q, want %q", got, c.wantSource)
			}
			if b, err := os.ReadFile(filepath.Join(mnt, "hello")); err != nil || string(b) != "hello" {
				t.Errorf("read the gofer's file through the mount: %q %v", b, err)
			}
		})
	}
}
