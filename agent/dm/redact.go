package dm

import "strings"

// Hidden stands in for a key in a table that is shown or stored.
const Hidden = "<hidden>"

// Redact returns t with every key replaced by [Hidden]: a crypt target's
// key (the kernel prints it in hex; a keyring reference such as
// ":64:logon:cryptsetup:…" names a key without holding it and is kept),
// and the keys of an integrity target's internal_hash, journal_crypt and
// journal_mac arguments. A table that is logged, printed or written to a
// manifest goes through Redact; only the live table read back from the
// kernel, reloaded in place, carries the key, and only in memory.
func Redact(t []Target) []Target {
	out := make([]Target, len(t))
	for i, x := range t {
		out[i] = x
		switch x.Type {
		case "crypt":
			out[i].Params = redactWord(x.Params, 1, func(w string) string {
				if strings.HasPrefix(w, ":") || w == "-" {
					return w
				}
				return Hidden
			})
		case "integrity":
			out[i].Params = redactWords(x.Params, func(w string) string {
				for _, p := range []string{"internal_hash:", "journal_crypt:", "journal_mac:"} {
					if rest, ok := strings.CutPrefix(w, p); ok {
						if alg, _, keyed := strings.Cut(rest, ":"); keyed {
							return p + alg + ":" + Hidden
						}
					}
				}
				return w
			})
		}
	}
	return out
}

// RedactTable is [Redact] on `dmsetup table` text. A text that does not
// parse is hidden whole: it may hold a key where Redact would not look.
func RedactTable(s string) string {
	t, err := ParseTable(s)
	if err != nil {
		return Hidden
	}
	return FormatTable(Redact(t))
}

// redactWord applies f to the n-th (0-based) whitespace-separated word of s.
func redactWord(s string, n int, f func(string) string) string {
	i := 0
	return redactWords(s, func(w string) string {
		defer func() { i++ }()
		if i == n {
			return f(w)
		}
		return w
	})
}

// redactWords applies f to every whitespace-separated word of s; the
// spacing between words is kept.
func redactWords(s string, f func(string) string) string {
	var b strings.Builder
	last := 0
	tokens(s, func(i, j int) {
		b.WriteString(s[last:i])
		b.WriteString(f(s[i:j]))
		last = j
	})
	b.WriteString(s[last:])
	return b.String()
}
