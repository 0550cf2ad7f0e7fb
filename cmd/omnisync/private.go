package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// privateDataDir makes dir, and everything the process writes from now on,
// readable by its owner only: the data directory holds personal data (the
// store, the broker's segments) and the credentials. It sets the process's
// umask to 077 (on Unix), creates dir 0700 and takes group and other
// permissions off whatever an earlier version left in it.
func privateDataDir(dir string) error {
	restrictUmask()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the data directory: %w", err)
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if mode := info.Mode().Perm(); mode&0o077 != 0 {
			return os.Chmod(path, mode&^0o077)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("making the data directory %s private: %w", dir, err)
	}
	return nil
}
