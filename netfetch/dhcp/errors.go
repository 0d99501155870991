package dhcp

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors; every error this package returns for these cases
// matches one of them with errors.Is.
var (
	// ErrNoLink: no link to run DHCP on: no Ethernet link at all (is the
	// NIC's driver loaded?), or no link of the name Config.Iface gives.
	ErrNoLink = errors.New("no network link")
	// ErrNoCarrier: the link stayed without carrier (cable, switch port,
	// or a virtual NIC not connected) for Config.LinkWait.
	ErrNoCarrier = errors.New("no carrier")
	// ErrNoAnswer: the link has carrier but no DHCP server answered (or a
	// server offered an address and then did not acknowledge it).
	ErrNoAnswer = errors.New("no DHCP server answered")
	// ErrRefused: a server answered the request with a NAK.
	ErrRefused = errors.New("DHCP server refused the request")
	// ErrBadLease: a server acknowledged with a lease that cannot be
	// used: no address, or a malformed mask or route.
	ErrBadLease = errors.New("unusable DHCP lease")
)

// LinkError is why one link got no lease.
type LinkError struct {
	Link     string
	MAC      string
	Attempts int // DHCP attempts made (0 when the link never had carrier)
	Err      error
}

func (e *LinkError) Error() string {
	if e.MAC != "" {
		return fmt.Sprintf("%s (%s): %v", e.Link, e.MAC, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Link, e.Err)
}

func (e *LinkError) Unwrap() error { return e.Err }

// Error is Configure's failure when no link got a lease: one LinkError
// per link tried, and Err, the context's error when Configure was
// cancelled. It matches the sentinels of its links with errors.Is.
type Error struct {
	Links []*LinkError
	Err   error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("no DHCP lease")
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	switch len(e.Links) {
	case 0:
	case 1:
		fmt.Fprintf(&b, ": %v", e.Links[0])
	default:
		b.WriteString(" on any of the links tried: ")
		for i, l := range e.Links {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(l.Error())
		}
	}
	return b.String()
}

func (e *Error) Unwrap() []error {
	errs := make([]error, 0, len(e.Links)+1)
	for _, l := range e.Links {
		errs = append(errs, l)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}
