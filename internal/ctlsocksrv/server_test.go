package ctlsocksrv

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"overlayfs/ctlsock"
)

// testHandler answers with fixed figures; tarErr, if set, fails the export
// after tarBytes bytes.
type testHandler struct {
	noUpper  bool
	tarBytes int
	tarErr   error
}

func (h testHandler) Stats() ctlsock.Stats { return ctlsock.Stats{Mountpoint: "/m", UpperFiles: 3} }

func (h testHandler) Changes() ([]ctlsock.Change, error) {
	if h.noUpper {
		return nil, ErrNoUpper
	}
	return []ctlsock.Change{{Kind: "A", Path: "/new"}}, nil
}

func (h testHandler) ExportTar(w io.Writer) error {
	if h.noUpper {
		return ErrNoUpper
	}
	if _, err := w.Write(bytes.Repeat([]byte{'t'}, h.tarBytes)); err != nil {
		return err
	}
	return h.tarErr
}

func listen(t *testing.T, h Handler) (*Server, ctlsock.Paths) {
	t.Helper()
	p := ctlsock.PathsIn(filepath.Join(t.TempDir(), "run"), "/m", 1)
	s, err := Listen(p, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, p
}

func TestServeRequests(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h       testHandler
		op      func(c *ctlsock.Client) (string, error)
		want    string // result, or the error's text
		wantErr bool
	}{
		{"stats", testHandler{}, func(c *ctlsock.Client) (string, error) {
			s, err := c.Stats()
			if err != nil {
				return "", err
			}
			return s.Mountpoint, nil
		}, "/m", false},
		{"diff", testHandler{}, func(c *ctlsock.Client) (string, error) {
			ch, err := c.Changes()
			if len(ch) != 1 {
				return "", err
			}
			return ch[0].Kind + " " + ch[0].Path, err
		}, "A /new", false},
		{"diff without upper", testHandler{noUpper: true}, func(c *ctlsock.Client) (string, error) {
			_, err := c.Changes()
			return "", err
		}, "no upper layer", true},
		{"tar", testHandler{tarBytes: 3 << 20}, func(c *ctlsock.Client) (string, error) {
			var b bytes.Buffer
			err := c.Tar(&b)
			return strconv.Itoa(b.Len()), err
		}, strconv.Itoa(3 << 20), false},
		{"tar without upper", testHandler{noUpper: true}, func(c *ctlsock.Client) (string, error) {
			return "", c.Tar(io.Discard)
		}, "nothing to export", true},
		{"tar failing halfway", testHandler{tarBytes: 100, tarErr: errors.New("disk on fire")}, func(c *ctlsock.Client) (string, error) {
			return "", c.Tar(io.Discard)
		}, "tar: disk on fire", true},
		{"unknown op", testHandler{}, func(c *ctlsock.Client) (string, error) {
			_, err := c.Call("launch")
			return "", err
		}, `unknown request "launch"`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, p := listen(t, tc.h)
			got, err := tc.op(ctlsock.NewClient("/m", p.Socket))
			switch {
			case tc.wantErr && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one with %q", err, tc.want)
			case !tc.wantErr && (err != nil || got != tc.want):
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestTarStreamsEveryByte(t *testing.T) {
	const n = 5<<20 + 123
	_, p := listen(t, testHandler{tarBytes: n})
	var b bytes.Buffer
	if err := ctlsock.NewClient("/m", p.Socket).Tar(&b); err != nil || b.Len() != n {
		t.Fatalf("Tar: %d bytes, %v; want %d", b.Len(), err, n)
	}
}

func TestCloseRemovesOnlyItsOwnFiles(t *testing.T) {
	s, p := listen(t, testHandler{})
	if pid := ctlsock.ReadPid(p.Pid); pid != os.Getpid() {
		t.Fatalf("pid file holds %d, want %d", pid, os.Getpid())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p.Socket, p.Pid} {
		if _, err := os.Lstat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s remains after Close: %v", f, err)
		}
	}
	// A newer daemon replaced both files: Close must leave them.
	s2, err := Listen(p, testHandler{})
	if err != nil {
		t.Fatal(err)
	}
	s3, err := Listen(p, testHandler{}) // replaces s2's files
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Pid, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if _, err := os.Lstat(p.Socket); err != nil {
		t.Errorf("closing a replaced server removed its successor's socket: %v", err)
	}
	if ctlsock.ReadPid(p.Pid) != 1 {
		t.Errorf("closing a server removed a pid file that is not its own")
	}
	if _, err := ctlsock.NewClient("/m", p.Socket).Stats(); err != nil {
		t.Errorf("the successor does not answer: %v", err)
	}
	s3.Close()
}

func TestRemoveStaleKeepsLiveDaemons(t *testing.T) {
	dir := t.TempDir()
	const mnt = "/m"
	live := ctlsock.PathsIn(dir, mnt, 5)
	s, err := Listen(live, testHandler{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dead := ctlsock.PathsIn(dir, mnt, 3)
	for _, f := range []string{dead.Socket, dead.Pid} {
		if err := os.WriteFile(f, []byte("0\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	RemoveStale(dir, mnt, 9)
	if _, err := os.Lstat(dead.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead daemon's socket remains: %v", err)
	}
	if _, err := os.Lstat(dead.Pid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead daemon's pid file remains: %v", err)
	}
	if _, err := os.Lstat(live.Socket); err != nil {
		t.Errorf("a live daemon's socket was removed: %v", err)
	}
}
