package httpra

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// contentRange is a parsed Content-Range header of a single-part answer.
// For "bytes */N" (the form of a 416 answer) unsatisfied is true and only
// total is set. total is -1 for "bytes A-B/*".
type contentRange struct {
	first, last, total int64
	unsatisfied        bool
}

// parseContentRange parses "bytes FIRST-LAST/TOTAL", "bytes FIRST-LAST/*"
// and "bytes */TOTAL" (RFC 9110 section 14.4).
func parseContentRange(s string) (contentRange, error) {
	bad := func(why string) (contentRange, error) {
		return contentRange{}, fmt.Errorf("Content-Range %q: %s", s, why)
	}
	unit, rest, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return bad(`not "bytes FIRST-LAST/TOTAL"`)
	}
	rest = strings.TrimLeft(rest, " ")
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("no /TOTAL")
	}
	cr := contentRange{total: -1}
	if tot != "*" {
		n, err := parseDigits(tot)
		if err != nil {
			return bad("total " + err.Error())
		}
		cr.total = n
	}
	if rng == "*" {
		if cr.total < 0 {
			return bad(`"*/*" says nothing`)
		}
		cr.unsatisfied = true
		return cr, nil
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return bad("range is not FIRST-LAST")
	}
	var err error
	if cr.first, err = parseDigits(a); err != nil {
		return bad("first byte " + err.Error())
	}
	if cr.last, err = parseDigits(b); err != nil {
		return bad("last byte " + err.Error())
	}
	if cr.last < cr.first {
		return bad("last byte before first")
	}
	if cr.total >= 0 && cr.last >= cr.total {
		return bad("range beyond the total size")
	}
	return cr, nil
}

// parseDigits parses a non-empty run of ASCII digits that fits an int64.
func parseDigits(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("is empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a number", s)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return n, nil
}

func (cr contentRange) String() string {
	tot := "*"
	if cr.total >= 0 {
		tot = strconv.FormatInt(cr.total, 10)
	}
	if cr.unsatisfied {
		return "bytes */" + tot
	}
	return fmt.Sprintf("bytes %d-%d/%s", cr.first, cr.last, tot)
}
