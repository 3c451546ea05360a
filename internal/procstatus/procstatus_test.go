package procstatus

import (
	"os"
	"testing"
)

func TestParseReadsKilobyteLinesAsBytes(t *testing.T) {
	status := "Name:\toverlayfs\nVmHWM:\t    9992 kB\nVmRSS:\t    6032 kB\nRssAnon:\t    1204 kB\nRssFile:\t    4828 kB\nRssShmem:\t       0 kB\n"
	m, err := Parse([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	want := Memory{RSS: 6032 << 10, Anon: 1204 << 10, File: 4828 << 10, HWM: 9992 << 10}
	if m != want {
		t.Fatalf("got %+v, want %+v", m, want)
	}
	if _, err := Parse([]byte("VmRSS:\tlots kB\n")); err == nil {
		t.Error("accepted a malformed VmRSS")
	}
}

func TestReadSelfHasResidentMemory(t *testing.T) {
	m, err := Read(0)
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 {
		t.Errorf("VmRSS of this process: %d", m.RSS)
	}
	if _, err := Read(os.Getpid()); err != nil {
		t.Error(err)
	}
}
