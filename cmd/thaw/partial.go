package main

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
)

// createPartial opens PATH.partial for writing with mode, removing a
// stale one first and never following a symbolic link there.
func createPartial(path string, mode os.FileMode) (f *os.File, tmp string, err error) {
	tmp = path + ".partial"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, "", err
	}
	f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
	return f, tmp, err
}

// commitPartial syncs and closes f (written as tmp), renames it over path
// and syncs the directory, so that path holds either the old file or the
// whole new one.
func commitPartial(f *os.File, tmp, path string) error {
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
