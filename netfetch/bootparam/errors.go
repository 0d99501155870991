package bootparam

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors; every [*Error] matches one of them with errors.Is.
var (
	// ErrUnknown: a thaw.* parameter this agent does not know, usually
	// a typo.
	ErrUnknown = errors.New("unknown thaw parameter")
	// ErrInvalid: a known parameter with a value it cannot take.
	ErrInvalid = errors.New("invalid value")
	// ErrMissing: a parameter the agent cannot run without is absent.
	ErrMissing = errors.New("missing parameter")
)

// Error is one problem with one parameter. Its message names the
// parameter, the value as written (thaw.token's value is never shown),
// what is wrong and how to write it instead.
type Error struct {
	Param  string // "thaw.resume"
	Value  string // as written; "" for a missing parameter or a token
	Kind   error  // ErrUnknown, ErrInvalid or ErrMissing
	Reason string // what is wrong
	Fix    string // what to write instead
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Param)
	if e.Value != "" {
		fmt.Fprintf(&b, "=%s", e.Value)
	}
	fmt.Fprintf(&b, ": %v", e.Kind)
	if e.Reason != "" {
		fmt.Fprintf(&b, ": %s", e.Reason)
	}
	if e.Fix != "" {
		fmt.Fprintf(&b, " (fix: %s)", e.Fix)
	}
	return b.String()
}

// Unwrap gives Kind.
func (e *Error) Unwrap() error { return e.Kind }

// Errors returns the [*Error] values an error from this package holds: one
// for a single problem, several when [Parse] or [Params.Validate] joined
// them. It returns nil for any other error.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case *Error:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
	return out
}

func invalid(param, value, reason, fix string) *Error {
	if param == keyToken {
		value = ""
	}
	return &Error{Param: param, Value: value, Kind: ErrInvalid, Reason: reason, Fix: fix}
}

// suggest returns the known parameter closest to name, or "" when none is
// close enough to be a likely typo.
func suggest(name string) string {
	best, bestD := "", 4
	for _, k := range keys {
		if d := distance(strings.ToLower(name), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b, in bytes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
