package ctlsock

import "os"

func writeEmpty(p string) error { return os.WriteFile(p, nil, 0o600) }
