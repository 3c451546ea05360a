package fuseuring

// The server's own /dev/fuse loop, which answers INIT and serves every
// request itself, over /dev/fuse or with the requests on the rings: the
// same dispatcher behind either transport, so that the tests and
// BenchmarkTransports can tell the transport's cost from go-fuse's. What
// overlayfs mounts with is NewServer (gofuse.go).

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Mount mounts fs on mnt (as root, without fusermount), answers INIT, and
// for IOURing registers every CPU's ring before returning, so that the
// first request after Mount already travels by the ring.
func Mount(fs fuse.RawFileSystem, mnt string, opts Options) (*Server, error) {
	if opts.Transport == IOURing {
		if err := URingAvailable(); err != nil {
			return nil, err
		}
	}
	if opts.Name == "" {
		opts.Name = "fuseuring"
	}
	if opts.MaxWrite <= 0 {
		opts.MaxWrite = 128 << 10
	}
	opts.setDefaults()
	if opts.DevReaders <= 0 {
		opts.DevReaders = possibleCPUs()
	}
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		return nil, fmt.Errorf("mount point: %w", err)
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/fuse: %w", err)
	}
	data := fmt.Sprintf("fd=%d,rootmode=%o,user_id=%d,group_id=%d,max_read=%d",
		fd, st.Mode&unix.S_IFMT, os.Geteuid(), os.Getegid(), opts.MaxWrite)
	if err := unix.Mount(opts.Name, mnt, "fuse."+opts.Name, unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mount fuse on %s: %w", mnt, err)
	}
	s := newServer(fs, mnt, fd, opts)
	err = s.start()
	if err == nil {
		err = pollHack(mnt)
	}
	if err != nil {
		unix.Unmount(mnt, unix.MNT_DETACH)
		s.stopQueues()
		if werr := s.Wait(); werr != nil {
			err = errors.Join(err, werr)
		}
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	buf := newDevBuffers(s.maxWrite)
	kernelFlags, err := s.handleInit(buf)
	if err != nil {
		return err
	}
	readers := s.opts.DevReaders
	if s.opts.Transport == IOURing {
		if kernelFlags&initOverIOUring == 0 {
			return errors.New("kernel did not offer FUSE_OVER_IO_URING in INIT: echo 1 > /sys/module/fuse/parameters/enable_uring")
		}
		readers = 1 // only FORGET and INTERRUPT come this way
		if err := s.startQueues(); err != nil {
			return err
		}
	}
	for i := range readers {
		b := buf
		if i > 0 {
			b = newDevBuffers(s.maxWrite)
		}
		s.dev = append(s.dev, &b.cur)
		s.wg.Add(1)
		go s.devLoop(b)
	}
	return nil
}

// devBuffers are one /dev/fuse reader's request and reply buffers,
// 8-byte aligned for go-fuse's structs.
type devBuffers struct {
	read  []byte
	write []byte
	in    []byte
	cur   inflight // the request in a handler, if any
}

func newDevBuffers(maxWrite int) *devBuffers {
	aligned := func(n int) []byte {
		w := make([]uint64, (n+7)/8)
		return unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), n)
	}
	size := max(fuseMinReadBuffer, maxWrite+4096)
	return &devBuffers{read: aligned(size), write: aligned(size), in: aligned(maxInStruct)}
}

// handleInit reads the INIT request and answers it with the capabilities
// go-fuse's Server negotiates, plus FUSE_OVER_IO_URING for IOURing.
func (s *Server) handleInit(b *devBuffers) (uint64, error) {
	n, err := readDev(s.devFD, b.read)
	if err != nil {
		return 0, fmt.Errorf("read INIT: %w", err)
	}
	if n < inHeaderSize+opInSize(opInit) {
		return 0, fmt.Errorf("short INIT request: %d bytes", n)
	}
	in := (*fuse.InitIn)(unsafe.Pointer(&b.read[0]))
	if in.Opcode != opInit {
		return 0, fmt.Errorf("first request has opcode %d, want INIT", in.Opcode)
	}
	if in.Major != 7 || in.Minor < 12 {
		s.reply(b, in.Unique, fuse.EIO, 0)
		return 0, fmt.Errorf("kernel FUSE protocol %d.%d unsupported", in.Major, in.Minor)
	}
	kernel := in.Flags64()
	flags := kernel & (fuse.CAP_ASYNC_READ | fuse.CAP_BIG_WRITES | fuse.CAP_FILE_OPS |
		fuse.CAP_READDIRPLUS | fuse.CAP_NO_OPEN_SUPPORT | fuse.CAP_PARALLEL_DIROPS |
		fuse.CAP_MAX_PAGES | fuse.CAP_AUTO_INVAL_DATA)
	if s.opts.Transport == IOURing {
		flags |= kernel & initOverIOUring
	}
	flags |= initExt
	out := (*fuse.InitOut)(unsafe.Pointer(&b.write[outHeaderSize]))
	*out = fuse.InitOut{
		Major:               7,
		Minor:               min(28, in.Minor),
		MaxReadAhead:        in.MaxReadAhead,
		Flags:               uint32(flags),
		Flags2:              uint32(flags >> 32),
		MaxBackground:       12,
		CongestionThreshold: 9,
		MaxWrite:            uint32(s.maxWrite),
		MaxPages:            uint16((s.maxWrite-1)/os.Getpagesize() + 1),
	}
	if err := s.reply(b, in.Unique, fuse.OK, int(unsafe.Sizeof(*out))); err != nil {
		return 0, fmt.Errorf("reply INIT: %w", err)
	}
	s.devCount.Add(1)
	return kernel, nil
}

// reply writes a fuse_out_header and n bytes already in b.write after it.
func (s *Server) reply(b *devBuffers, unique uint64, st fuse.Status, n int) error {
	if !st.Ok() {
		n = 0
	}
	total := outHeaderSize + n
	putOutHeader(b.write, uint32(total), -int32(st), unique)
	for {
		_, err := unix.Write(s.devFD, b.write[:total])
		if err == unix.EINTR {
			continue
		}
		if err == unix.ENOENT { // the request was interrupted and is gone
			return nil
		}
		return err
	}
}

func readDev(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Read(fd, buf)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR, unix.EAGAIN, unix.ENOENT:
			continue
		}
		return 0, err
	}
}

// devLoop serves requests read from /dev/fuse until the connection ends.
func (s *Server) devLoop(b *devBuffers) {
	defer s.wg.Done()
	for {
		n, err := readDev(s.devFD, b.read)
		if err != nil {
			if err != unix.ENODEV {
				s.setErr(fmt.Errorf("read /dev/fuse: %w", err))
			}
			s.stopQueues()
			return
		}
		if n < inHeaderSize {
			s.setErr(fmt.Errorf("short request from /dev/fuse: %d bytes", n))
			continue
		}
		s.devCount.Add(1)
		h := (*fuse.InHeader)(unsafe.Pointer(&b.read[0]))
		size := 0
		if h.Opcode < opCount {
			size = opInSize(h.Opcode)
		}
		size = min(size, n-inHeaderSize)
		copy(b.in, b.read[:inHeaderSize+size])
		clear(b.in[inHeaderSize+size:])
		req := request{
			in:      b.in,
			payload: b.read[inHeaderSize+size : n],
			out:     b.write[outHeaderSize:],
		}
		b.cur.begin(h)
		st, outN := s.dispatch(&req)
		b.cur.end()
		if noReply(h.Opcode) {
			continue
		}
		if err := s.reply(b, h.Unique, st, outN); err != nil && err != unix.ENODEV {
			s.setErr(fmt.Errorf("write /dev/fuse: %w", err))
		}
	}
}
