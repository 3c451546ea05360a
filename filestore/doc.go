// Package filestore parses the --overlay2 flag (gVisor runsc's grammar) and
// opens the host file descriptor that backs the overlay's upper-layer data
// for each medium: a memfd for "memory", an unlinked file in a directory for
// "dir=", and a named hidden file in the lower root for "self".
package filestore
