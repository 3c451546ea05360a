package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	ourlisafs "overlayfs/lisafs"
)

// BenchmarkGoferProcess measures round trips of our client to gofer
// processes (overlayfs gofer and gVisor's), socket alone versus channels:
// FStat, and a 4 KiB PRead.
func BenchmarkGoferProcess(b *testing.B) {
	for _, gofer := range []struct {
		name string
		cmd  func(root string) goferCmd
	}{{"overlayfs", func(r string) goferCmd { return ours(r) }}, {"gvisor", func(r string) goferCmd { return theirs(r) }}} {
		for _, mode := range []struct {
			name string
			opts ourlisafs.ClientOptions
		}{{"socket", ourlisafs.ClientOptions{Channels: -1}}, {"channel", ourlisafs.ClientOptions{}}} {
			for _, op := range []string{"FStat", "PRead4K"} {
				b.Run(fmt.Sprintf("%s/%s/%s", gofer.name, mode.name, op), func(b *testing.B) {
					root := b.TempDir()
					if err := os.WriteFile(filepath.Join(root, "f"), make([]byte, 1<<20), 0o644); err != nil {
						b.Fatal(err)
					}
					fd, _ := startGofer(b, gofer.cmd(root))
					c, rootIno, rootFD, err := ourlisafs.NewClientWithOptions(fd, mode.opts)
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close()
					if rootFD >= 0 {
						unix.Close(rootFD)
					}
					_, ins, err := c.Walk(rootIno.ControlFD, []string{"f"})
					if err != nil || len(ins) != 1 {
						b.Fatal(err)
					}
					open, hostFD, err := c.OpenAt(ins[0].ControlFD, unix.O_RDONLY)
					if err != nil {
						b.Fatal(err)
					}
					if hostFD >= 0 {
						unix.Close(hostFD)
					}
					buf := make([]byte, 4096)
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if op == "FStat" {
							_, err = c.FStat(ins[0].ControlFD)
						} else {
							_, err = c.PRead(open, uint64(i%256)*4096, buf)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
