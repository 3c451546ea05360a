package lisafs

// midRow is everything this package knows of one message ID: its name,
// its request and response payloads, the host FDs donated with its
// response, and how this package's server serves it.
type midRow struct {
	name string
	req  func() Message // nil for Error, which is never a request
	resp func() Message
	fds  int // host FDs a client makes room for in the response

	serve     handlerFunc // nil: answered EOPNOTSUPP
	mutates   bool        // refused with EROFS on a read-only server before decoding
	exclusive bool        // releases host fds: runs with no other request in flight
	advertise bool        // listed in MountResp.SupportedMs
}

// catalogue returns the table of message IDs, indexed by MID: the standard
// ones (0..MIDMax) and the extensions (extensions.go); other rows are zero.
// It is built per call, so that no package state exists.
func catalogue() []midRow {
	empty := func() Message { return &EmptyMessage{} }
	fd := func() Message { return &FDReq{} }
	inode := func() Message { return &Inode{} }
	t := make([]midRow, MIDWalkOpenDir+1)
	// std adds a standard MID that the server serves and advertises.
	std := func(m MID, name string, req, resp func() Message, fds int, serve handlerFunc, mutates bool) {
		t[m] = midRow{name: name, req: req, resp: resp, fds: fds, serve: serve, mutates: mutates, advertise: true}
	}
	t[MIDError] = midRow{name: "Error", resp: func() Message { return &ErrorResp{} }}
	std(MIDMount, "Mount", empty, func() Message { return &MountResp{} }, 1, handleMount, false)
	std(MIDChannel, "Channel", empty, func() Message { return &ChannelResp{} }, 2, handleChannel, false)
	std(MIDFStat, "FStat", fd, func() Message { return &Statx{} }, 0, handleFStat, false)
	std(MIDSetStat, "SetStat", func() Message { return &SetStatReq{} }, func() Message { return &SetStatResp{} }, 0, handleSetStat, true)
	std(MIDWalk, "Walk", func() Message { return &WalkReq{} }, func() Message { return &WalkResp{} }, 0, handleWalk, false)
	std(MIDWalkStat, "WalkStat", func() Message { return &WalkReq{} }, func() Message { return &WalkStatResp{} }, 0, handleWalkStat, false)
	// OpenAt's EROFS is decided on its flags.
	std(MIDOpenAt, "OpenAt", func() Message { return &OpenAtReq{} }, func() Message { return &OpenAtResp{} }, 1, handleOpenAt, false)
	std(MIDOpenCreateAt, "OpenCreateAt", func() Message { return &OpenCreateAtReq{} }, func() Message { return &OpenCreateAtResp{} }, 1, handleOpenCreateAt, true)
	std(MIDClose, "Close", func() Message { return &FdArray{} }, empty, 0, handleClose, false)
	t[MIDClose].exclusive = true
	std(MIDFSync, "FSync", func() Message { return &FdArray{} }, empty, 0, handleFSync, false)
	std(MIDPWrite, "PWrite", func() Message { return &PWriteReq{} }, func() Message { return &PWriteResp{} }, 0, handlePWrite, true)
	std(MIDPRead, "PRead", func() Message { return &PReadReq{} }, func() Message { return &PReadResp{} }, 0, handlePRead, false)
	std(MIDMkdirAt, "MkdirAt", func() Message { return &MkdirAtReq{} }, inode, 0, handleMkdirAt, true)
	std(MIDMknodAt, "MknodAt", func() Message { return &MknodAtReq{} }, inode, 0, handleMknodAt, true)
	std(MIDSymlinkAt, "SymlinkAt", func() Message { return &SymlinkAtReq{} }, inode, 0, handleSymlinkAt, true)
	std(MIDLinkAt, "LinkAt", func() Message { return &LinkAtReq{} }, inode, 0, handleLinkAt, true)
	std(MIDFStatFS, "FStatFS", fd, func() Message { return &StatFS{} }, 0, handleFStatFS, false)
	std(MIDFAllocate, "FAllocate", func() Message { return &FAllocateReq{} }, empty, 0, handleFAllocate, true)
	std(MIDReadLinkAt, "ReadLinkAt", fd, func() Message { return &ReadLinkAtResp{} }, 0, handleReadLinkAt, false)
	// Flush is neither served nor advertised, as in gVisor's gofer.
	t[MIDFlush] = midRow{name: "Flush", req: fd, resp: empty}
	std(MIDConnect, "Connect", func() Message { return &ConnectReq{} }, empty, 1, handleConnect, false)
	std(MIDUnlinkAt, "UnlinkAt", func() Message { return &UnlinkAtReq{} }, empty, 0, handleUnlinkAt, true)
	std(MIDRenameAt, "RenameAt", func() Message { return &RenameAtReq{} }, empty, 0, handleRenameAt, true)
	std(MIDGetdents64, "Getdents64", func() Message { return &Getdents64Req{} }, func() Message { return &Getdents64Resp{} }, 0, handleGetdents64, false)
	std(MIDFGetXattr, "FGetXattr", func() Message { return &FGetXattrReq{} }, func() Message { return &FGetXattrResp{} }, 0, handleFGetXattr, false)
	std(MIDFSetXattr, "FSetXattr", func() Message { return &FSetXattrReq{} }, empty, 0, handleFSetXattr, true)
	std(MIDFListXattr, "FListXattr", func() Message { return &FListXattrReq{} }, func() Message { return &FListXattrResp{} }, 0, handleFListXattr, false)
	std(MIDFRemoveXattr, "FRemoveXattr", func() Message { return &FRemoveXattrReq{} }, empty, 0, handleFRemoveXattr, true)
	std(MIDBindAt, "BindAt", func() Message { return &BindAtReq{} }, func() Message { return &BindAtResp{} }, 1, handleBindAt, true)
	std(MIDListen, "Listen", func() Message { return &ListenReq{} }, empty, 0, handleListen, false)
	std(MIDAccept, "Accept", fd, func() Message { return &AcceptResp{} }, 1, handleAccept, false)
	std(MIDConnectWithCreds, "ConnectWithCreds", func() Message { return &ConnectWithCredsReq{} }, empty, 1, handleConnectWithCreds, false)
	std(MIDRenameAt2, "RenameAt2", func() Message { return &RenameAt2Req{} }, empty, 0, handleRenameAt2, true)
	// Extensions, answered but not advertised (extensions.go).
	t[MIDGetdents64Stat] = midRow{name: "Getdents64Stat", req: func() Message { return &Getdents64Req{} },
		resp: func() Message { return &Getdents64StatResp{} }, serve: handleGetdents64Stat}
	t[MIDWalkOpenDir] = midRow{name: "WalkOpenDir", req: func() Message { return &WalkOpenDirReq{} },
		resp: func() Message { return &WalkOpenDirResp{} }, serve: handleWalkOpenDir}
	return t
}

// row returns mid's row of t, a zero row for a MID without one.
func row(t []midRow, mid MID) midRow {
	if int(mid) < len(t) {
		return t[mid]
	}
	return midRow{}
}

// newRequest returns a fresh zero message for the request payload of mid, or
// nil if mid has no request (MIDError, or a MID this package does not know).
func newRequest(mid MID) Message {
	if r := row(catalogue(), mid); r.req != nil {
		return r.req()
	}
	return nil
}

// newResponse returns a fresh zero message for the response payload of mid
// (MIDError → *ErrorResp), or nil if this package does not know mid.
func newResponse(mid MID) Message {
	if r := row(catalogue(), mid); r.resp != nil {
		return r.resp()
	}
	return nil
}

// expectedFDs returns how many donated FDs a client should make room for in
// the response to mid (README.md, "Mount-point FD"): 2 for Channel; 1 for
// Mount, OpenAt, OpenCreateAt, Connect, ConnectWithCreds, BindAt and
// Accept; 0 otherwise.
func expectedFDs(mid MID) int { return row(catalogue(), mid).fds }

// isMutating reports whether a read-only server refuses mid with EROFS
// regardless of its payload (OpenAt is refused only for write modes).
func isMutating(mid MID) bool { return row(catalogue(), mid).mutates }
