module overlayfs/interop

go 1.26.3

replace overlayfs => ../

require (
	golang.org/x/sys v0.50.0
	gvisor.dev/gvisor v0.0.0-20260905035102-160fafc42237
)

require (
	golang.org/x/exp v0.0.0-20250711185948-6ae5c78190dc // indirect
	golang.org/x/time v0.15.0 // indirect
)

require overlayfs v0.0.0-00010101000000-000000000000
