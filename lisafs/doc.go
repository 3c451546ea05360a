// Package lisafs implements LISAFS, gVisor's gofer protocol, wire-compatible
// with gVisor: the encoding of every message, the socket framing with
// SCM_RIGHTS donation, flipcall channels in shared memory, a client and a
// server. README.md in this directory describes the protocol as this package
// speaks it; comments refer to its sections by name (e.g. README.md,
// "Channels").
package lisafs
