package fuseuring

// Kernel ABI of FUSE over io_uring (include/uapi/linux/fuse.h, 7.42+) and of
// io_uring itself (include/uapi/linux/io_uring.h). Only what this package uses.

const (
	// initOverIOUring is FUSE_OVER_IO_URING: bit 41 of the 64-bit INIT
	// flags, i.e. bit 9 of flags2.
	initOverIOUring = uint64(1) << 41
	// initExt is FUSE_INIT_EXT: flags2 is valid.
	initExt = uint64(1) << 30

	// fuseURingCmdRegister is FUSE_IO_URING_CMD_REGISTER.
	fuseURingCmdRegister = 1
	// fuseURingCmdCommitAndFetch is FUSE_IO_URING_CMD_COMMIT_AND_FETCH.
	fuseURingCmdCommitAndFetch = 2

	// Layout of struct fuse_uring_req_header: in_out[128] holds the
	// fuse_in_header (request) or fuse_out_header (reply); op_in[128] holds
	// the opcode's fixed argument; ring_ent_in_out follows.
	hdrInOut    = 0
	hdrOpIn     = 128
	hdrOpInSize = 128
	hdrEntInOut = 256
	// struct fuse_uring_ent_in_out: flags u64, commit_id u64, payload_sz
	// u32, padding u32, reserved u64.
	entCommitID  = hdrEntInOut + 8
	entPayloadSz = hdrEntInOut + 16
	hdrSize      = hdrEntInOut + 32

	// fuseMinReadBuffer is FUSE_MIN_READ_BUFFER: the kernel's lower bound
	// of the ring payload size.
	fuseMinReadBuffer = 8192
)

const (
	ioringSetupCQSize = 1 << 3
	ioringSetupSQE128 = 1 << 10

	ioringFeatSingleMmap = 1 << 0

	ioringEnterGetEvents = 1 << 0

	ioringOffSQRing = 0
	ioringOffCQRing = 0x8000000
	ioringOffSQEs   = 0x10000000

	ioringOpURingCmd = 46

	// sqe128Size is the size of one SQE with IORING_SETUP_SQE128.
	sqe128Size = 128
	// cqeSize is the size of a plain CQE.
	cqeSize = 16

	// SQE field offsets (struct io_uring_sqe).
	sqeOpcode   = 0
	sqeFd       = 4
	sqeCmdOp    = 8 // union with off: cmd_op u32, __pad1 u32
	sqeAddr     = 16
	sqeLen      = 24
	sqeUserData = 32
	sqeCmd      = 48 // 80 command bytes with SQE128: struct fuse_uring_cmd_req
	// struct fuse_uring_cmd_req: flags u64, commit_id u64, qid u16.
	cmdCommitID = sqeCmd + 8
	cmdQid      = sqeCmd + 16
)

// ioSqringOffsets is struct io_sqring_offsets.
type ioSqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

// ioCqringOffsets is struct io_cqring_offsets.
type ioCqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

// ioURingParams is struct io_uring_params (120 bytes).
type ioURingParams struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  ioSqringOffsets
	CqOff                                                                  ioCqringOffsets
}
