//go:build !linux

package stick

import "errors"

var errLinux = errors.New("the thaw stick is mounted on Linux only")

// Mount needs Linux.
func (s *Stick) Mount(dir, espDir string) error { return errLinux }

// WriteLog needs Linux.
func (s *Stick) WriteLog(name string, b []byte) (string, error) { return "", errLinux }

// Unmount needs Linux.
func (s *Stick) Unmount() error { return errLinux }
