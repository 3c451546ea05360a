// Package bench measures the overlay's upper-layer media side by side.
//
// A run mounts a fresh overlay per medium per run by executing the overlayfs
// binary (`overlayfs mount --overlay2 SPEC LOWER MNT`, `overlayfs umount MNT`),
// runs one workload inside it, samples the daemon's memory from /proc while
// it runs, and always unmounts. Media are interleaved within each run so that
// drift on a noisy machine hits all of them alike. References that are not
// overlayfs (the host directory, Linux overlayfs with a tmpfs upper,
// fuse-overlayfs) run the same workloads when the machine has them; the
// result says which were skipped and why.
//
// Results are written as a readable table (WriteTable), JSON (WriteJSON) and
// a hand-written SVG chart (WriteSVG).
package bench
