package fusekit

import "sync"

// Inode numbers. A host (st_dev, st_ino) pair becomes the host number with
// a per-device tag in the high 16 bits: tag 0 for the first device seen,
// normally the lower directory's, so most files keep their host number. A
// pair that does not fit (a host number of 48 bits or more, or too many
// devices), and every file that exists only in the mount, gets a number
// with the reserved tag allocTag.
const (
	tagShift = 48
	allocTag = 0x7fff
)

// DevIno identifies a host file.
type DevIno struct{ Dev, Ino uint64 }

// InoMap turns host files into inode numbers unique within one mount, and
// hands out numbers for files that have no host file. The same pair always
// gets the same number. The zero InoMap is ready to use.
type InoMap struct {
	mu   sync.Mutex
	tags map[uint64]uint64 // st_dev → tag
	big  map[DevIno]uint64 // pairs that do not fit a tag
	next uint64            // last allocated number below allocTag
}

// Get returns the inode number of the host file k.
func (m *InoMap) Get(k DevIno) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tags == nil {
		m.tags = make(map[uint64]uint64)
		m.big = make(map[DevIno]uint64)
	}
	tag, ok := m.tags[k.Dev]
	if !ok {
		tag = uint64(len(m.tags))
		m.tags[k.Dev] = tag
	}
	if tag < allocTag && k.Ino < 1<<tagShift {
		return tag<<tagShift | k.Ino
	}
	if v, ok := m.big[k]; ok {
		return v
	}
	v := m.allocLocked()
	m.big[k] = v
	return v
}

// Alloc returns a fresh number that no host file maps to.
func (m *InoMap) Alloc() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.allocLocked()
}

func (m *InoMap) allocLocked() uint64 {
	m.next++
	return allocTag<<tagShift | m.next
}
