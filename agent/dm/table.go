package dm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxTypeLen is the longest target type name: DM_MAX_TYPE_NAME (16) less
// its NUL.
const maxTypeLen = 15

// Target is one line of a device-mapper table.
type Target struct {
	Start  uint64 // first sector, 512-byte sectors
	Length uint64 // sectors
	Type   string // linear, striped, crypt, thin-pool, …
	Params string // the target's arguments as the kernel prints them
}

// isSpace is the kernel's isspace (lib/ctype.c) for ASCII, which
// dm_split_args uses to cut a table line into arguments.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func trimSpace(s string) string {
	for s != "" && isSpace(s[0]) {
		s = s[1:]
	}
	for s != "" && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// field cuts the first whitespace-separated word off s.
func field(s string) (word, rest string) {
	s = trimSpace(s)
	i := 0
	for i < len(s) && !isSpace(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// check reports what the kernel could not take in a target.
func (t Target) check() error {
	switch {
	case t.Type == "":
		return errors.New("target has no type")
	case len(t.Type) > maxTypeLen:
		return fmt.Errorf("target type %q is longer than %d bytes", t.Type, maxTypeLen)
	case strings.IndexFunc(t.Type, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) || r == 0 }) >= 0:
		return fmt.Errorf("target type %q contains a space or NUL", t.Type)
	case strings.IndexByte(t.Params, 0) >= 0:
		return fmt.Errorf("%s target's parameters contain a NUL", t.Type)
	}
	return nil
}

// FormatTable writes t as `dmsetup table` prints it, one target a line
// ("0 3145728 linear 254:1 2048"), without a final newline.
func FormatTable(t []Target) string {
	var b strings.Builder
	for i, x := range t {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strconv.FormatUint(x.Start, 10))
		b.WriteByte(' ')
		b.WriteString(strconv.FormatUint(x.Length, 10))
		b.WriteByte(' ')
		b.WriteString(x.Type)
		if x.Params != "" {
			b.WriteByte(' ')
			b.WriteString(x.Params)
		}
	}
	return b.String()
}

// ParseTable reads `dmsetup table` text: per line a start sector, a length,
// a target type and the rest of the line as parameters. Blank lines and
// whitespace around each line are ignored; an empty text is an empty
// table.
func ParseTable(s string) ([]Target, error) {
	var out []Target
	for n, line := range strings.Split(s, "\n") {
		if trimSpace(line) == "" {
			continue
		}
		var t Target
		start, rest := field(line)
		length, rest := field(rest)
		t.Type, rest = field(rest)
		t.Params = trimSpace(rest)
		var err error
		if t.Start, err = strconv.ParseUint(start, 10, 64); err != nil {
			return nil, fmt.Errorf("dm: table line %d: start sector %q: %w", n+1, start, err)
		}
		if t.Length, err = strconv.ParseUint(length, 10, 64); err != nil {
			return nil, fmt.Errorf("dm: table line %d: length %q: %w", n+1, length, err)
		}
		if err := t.check(); err != nil {
			return nil, fmt.Errorf("dm: table line %d: %w", n+1, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// tokens calls f with the start and end of every whitespace-separated
// word of s.
func tokens(s string, f func(i, j int)) {
	for i := 0; i < len(s); {
		if isSpace(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && !isSpace(s[j]) {
			j++
		}
		f(i, j)
		i = j
	}
}

// Devs lists the devices t refers to, each once, in the order they first
// appear: every parameter that is a whole "major:minor" word.
func Devs(t []Target) []uint64 {
	var out []uint64
	seen := map[uint64]bool{}
	for _, x := range t {
		tokens(x.Params, func(i, j int) {
			if d, ok := ParseDev(x.Params[i:j]); ok && !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		})
	}
	return out
}

// Retarget returns a copy of t in which every parameter that is a whole
// "major:minor" word naming a key of moved (old device → new device)
// names the new device instead; changed says whether any did. All
// references are rewritten in one pass, so moves may swap devices. The
// rest of each parameter string, whitespace included, is kept byte for
// byte: other words that merely contain colons (a crypt key description
// ":64:logon:…", feature arguments) are left alone.
func Retarget(t []Target, moved map[uint64]uint64) (out []Target, changed bool) {
	if len(t) == 0 {
		return nil, false
	}
	out = make([]Target, len(t))
	copy(out, t)
	for k := range out {
		p := out[k].Params
		var b strings.Builder
		last := 0
		tokens(p, func(i, j int) {
			old, ok := ParseDev(p[i:j])
			if !ok {
				return
			}
			nw, ok := moved[old]
			if !ok || nw == old {
				return
			}
			b.WriteString(p[last:i])
			b.WriteString(FormatDev(nw))
			last = j
		})
		if last > 0 {
			b.WriteString(p[last:])
			out[k].Params = b.String()
			changed = true
		}
	}
	return out, changed
}
