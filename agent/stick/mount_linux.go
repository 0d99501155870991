package stick

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

const roFlags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// Mount mounts the data partition read-only at dir, and the ESP (if any)
// read-only at espDir (if not ""). The vfat driver must be loaded.
func (s *Stick) Mount(dir, espDir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(s.Data, dir, "vfat", roFlags, ""); err != nil {
		return fmt.Errorf("mount %s (%s) read-only on %s: %w", s.Data, DataLabel, dir, err)
	}
	s.Dir = dir
	if s.ESP != "" && espDir != "" {
		if err := os.MkdirAll(espDir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(s.ESP, espDir, "vfat", roFlags, ""); err != nil {
			return fmt.Errorf("mount %s (%s) read-only on %s: %w", s.ESP, ESPLabel, espDir, err)
		}
		s.ESPDir = espDir
	}
	return nil
}

// WriteLog writes b to thaw-logs/name on the data partition: it remounts
// the partition read-write for that one file, syncs it and remounts it
// read-only. It returns the file's path on the stick. An existing file of
// that name is not overwritten.
func (s *Stick) WriteLog(name string, b []byte) (path string, err error) {
	if s.Dir == "" {
		return "", fmt.Errorf("stick %s is not mounted", s.Data)
	}
	if !logName.MatchString(name) {
		return "", fmt.Errorf("log name %q: letters, digits, '.', '_' and '-' only", name)
	}
	if err := unix.Mount("", s.Dir, "", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return "", fmt.Errorf("remount %s read-write for the log: %w", s.Data, err)
	}
	defer func() {
		if rerr := unix.Mount("", s.Dir, "", unix.MS_REMOUNT|roFlags, ""); rerr != nil && err == nil {
			err = fmt.Errorf("remount %s read-only after the log: %w", s.Data, rerr)
		}
	}()
	logs := filepath.Join(s.Dir, LogDir)
	if err := os.Mkdir(logs, 0o755); err != nil && !os.IsExist(err) {
		return "", fmt.Errorf("%s on %s: %w", LogDir, s.Data, err)
	}
	f, err := os.OpenFile(filepath.Join(logs, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("log on %s: %w", s.Data, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return "", fmt.Errorf("log on %s: %w", s.Data, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("log on %s: %w", s.Data, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	unix.Sync()
	return LogDir + "/" + name, nil
}

// Unmount unmounts what Mount mounted.
func (s *Stick) Unmount() error {
	var first error
	for _, d := range []*string{&s.ESPDir, &s.Dir} {
		if *d == "" {
			continue
		}
		if err := unix.Unmount(*d, 0); err != nil && first == nil {
			first = fmt.Errorf("unmount %s: %w", *d, err)
		}
		*d = ""
	}
	return first
}
