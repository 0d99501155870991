//go:build !linux || !amd64

package kexec

import "github.com/thawlinux/thaw/images/manifest"

// LoadWithE820 is linux/amd64 only.
func LoadWithE820(img Image, src []manifest.E820Entry, opt Options) (*Loaded, error) {
	return nil, ErrUnsupported
}

// FileLoad is linux/amd64 only.
func FileLoad(img Image) error { return ErrUnsupported }

// Exec is linux/amd64 only.
func Exec() error { return ErrUnsupported }
