// Package memfile stores the data of upper-layer regular files in one backing
// file descriptor (a memfd or an unlinked host file).
//
// A File is a page-granular allocator over that descriptor: it hands out
// contiguous page ranges, grows the backing file sparsely in large chunks and
// returns freed pages to the host with fallocate(PUNCH_HOLE|KEEP_SIZE) so they
// stop occupying memory or disk and can be handed out again. All I/O goes
// through pread/pwrite; nothing is mapped, so the data stays reclaimable page
// cache rather than process memory.
//
// A Data is one regular file's contents: a sorted extent map from offsets in
// that file to ranges of a File. Ranges never handed out read as zeros (holes).
package memfile
