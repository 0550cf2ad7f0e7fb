//go:build unix

package sqlite

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// TryLockWriter takes the store's write lock, an exclusive flock on the
// file PATH-writer.lock beside the database: one materializer writes a
// SQLite store at a time. The lock goes with the process.
func (s *Store) TryLockWriter() (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(s.path+"-writer.lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("opening the write lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, true, nil
}
