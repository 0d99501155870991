package bundle

import (
	"errors"
	"fmt"
	"strings"
)

// ErrPin is a bundle whose index is not the one a reference pinned.
var ErrPin = errors.New("bundle: not the bundle pinned")

// SplitPin cuts a "#sha256=DIGEST" pin off a bundle reference (a URL or
// a path): the digest of the index (Reader.Digest) names one bundle, so
// that another one signed by the same key (an older capture) cannot be
// served in its place.
func SplitPin(ref string) (plain, pin string, err error) {
	i := strings.LastIndexByte(ref, '#')
	if i < 0 {
		return ref, "", nil
	}
	frag := ref[i+1:]
	d, ok := strings.CutPrefix(frag, "sha256=")
	if !ok || len(d) != 64 || strings.Trim(strings.ToLower(d), "0123456789abcdef") != "" {
		return ref, "", fmt.Errorf("%q: after # want sha256= and the 64 hex digits of the index digest (thaw inspect shows it)", frag)
	}
	return ref[:i], strings.ToLower(d), nil
}

// CheckPin checks an open bundle against a pin from SplitPin; an empty pin
// passes.
func CheckPin(br *Reader, pin string) error {
	if pin == "" || br.Digest() == pin {
		return nil
	}
	return fmt.Errorf("%w: its index digest is %s, the reference asks for %s (bundle id %s from %s, written %s)",
		ErrPin, br.Digest(), pin, br.Label.ID, br.Label.Host, br.Label.Created)
}
