"""Rewrites gVisor's testsuite.go so that RunTest connects gVisor's client to
`overlayfs gofer` (a child process serving mountPath on an inherited socket)
instead of an in-process gVisor server. Fails loudly if the suite's shape
changed."""
import re
import sys

path = sys.argv[1]
s = open(path).read()

start = s.index("\tserverSocket, clientSocket, err := unet.SocketPair(false)")
end = s.index("\tc, root, _, err := lisafs.NewClient(clientSocket)")
s = s[:start] + '''\tfds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
\tif err != nil {
\t\tt.Fatalf("socketpair: %v", err)
\t}
\tgofer := exec.Command(os.Getenv("OVERLAYFS_BIN"), "gofer", "--root", mountPath, "--fd", "3")
\tchild := os.NewFile(uintptr(fds[1]), "gofer")
\tgofer.ExtraFiles = []*os.File{child}
\tgofer.Stderr = os.Stderr
\tif err := gofer.Start(); err != nil {
\t\tt.Fatalf("start overlayfs gofer: %v", err)
\t}
\tchild.Close()
\tclientSocket, err := unet.NewSocket(fds[0])
\tif err != nil {
\t\tt.Fatalf("socket: %v", err)
\t}
''' + s[end:]

tail_start = s.index("\t// Release server resources and check for leaks.")
tail_end = s.index("\tserver.Wait()\n") + len("\tserver.Wait()\n")
s = s[:tail_start] + '''\tc.Close() // The gofer exits when the socket closes.
\tif err := gofer.Wait(); err != nil {
\t\tt.Errorf("overlayfs gofer: %v", err)
\t}
''' + s[tail_end:]

s = s.replace("\trefs.SetLeakMode(refs.LeaksPanic)\n", "")
s = s.replace('\t"gvisor.dev/gvisor/pkg/refs"\n', "")
s = s.replace('import (\n', 'import (\n\t"os/exec"\n', 1)
open(path, "w").write(s)
