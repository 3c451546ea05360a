package daemon

import (
	"fmt"

	"overlayfs/internal/fanwatch"
	"overlayfs/overlay"
)

// lowerWatch reports outside changes to the lower directories to the
// overlay (--file-access notify): a fanwatch.Watcher on their file systems
// and the goroutine that hands its changes to overlay.LowerChanges.
type lowerWatch struct {
	w       *fanwatch.Watcher
	done    chan struct{}
	started bool
	logf    func(format string, args ...any)
}

// watchRoots are the directories a notified mount watches: the lower
// directories, or LOWERDIR.
func watchRoots(cfg Config) ([]string, error) {
	if len(cfg.LowerDirs) > 1 {
		return cfg.LowerDirs, nil
	}
	if cfg.LowerDir == "" {
		return nil, fmt.Errorf("--file-access notify watches LOWERDIR's file system: name the gofer's directory as LOWERDIR")
	}
	return []string{cfg.LowerDir}, nil
}

// newLowerWatch marks the file systems of the lower directories. It fails
// (naming CAP_SYS_ADMIN when that is why) before anything is mounted.
func newLowerWatch(cfg Config) (*lowerWatch, error) {
	roots, err := watchRoots(cfg)
	if err != nil {
		return nil, err
	}
	w, err := fanwatch.New(roots)
	if err != nil {
		return nil, fmt.Errorf("--file-access notify: %w", err)
	}
	return &lowerWatch{w: w, done: make(chan struct{}), logf: cfg.Logf}, nil
}

// start hands changes to fs until stop. Call it once fs is mounted (it
// needs the server for its notifications).
func (lw *lowerWatch) start(fs *overlay.FS) {
	type key struct {
		dir, name string
		entry     bool
	}
	seen := make(map[key]bool)
	lc := fs.LowerChanges()
	lw.started = true
	go func() {
		defer close(lw.done)
		err := lw.w.Run(func(cs []fanwatch.Change) {
			// One read often brings the same name several times (a
			// write's MODIFY, then CLOSE_WRITE): tell the overlay once.
			clear(seen)
			for _, c := range cs {
				k := key{c.Dir, c.Name, c.Entry}
				if seen[k] {
					continue
				}
				seen[k] = true
				lc.Changed(c.Dir, c.Name, c.Entry)
			}
		}, lc.All)
		if err != nil {
			lw.logf("overlayfs: watching LOWERDIR stopped: %v", err)
		}
	}()
}

// stop ends the watch and logs what it read.
func (lw *lowerWatch) stop() {
	_ = lw.w.Close()
	if lw.started {
		<-lw.done
	}
	st := lw.w.Stats()
	lw.logf("overlayfs: fanotify: %d events read, %d changes below LOWERDIR, %d directory handles resolved, %d overflows", st.Events, st.Changes, st.Resolves, st.Overflows)
}
