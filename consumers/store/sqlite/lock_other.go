//go:build !unix

package sqlite

// TryLockWriter takes no lock where flock is missing: run one
// materializer per SQLite store there.
func (s *Store) TryLockWriter() (unlock func(), ok bool, err error) { return func() {}, true, nil }
