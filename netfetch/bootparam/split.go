package bootparam

import "strings"

// Arg is one parameter of a kernel command line, as the kernel splits it.
type Arg struct {
	Name string
	// Value is the text after the first '=', without the quotes the
	// kernel removes. It is "" both for "name=" and for a bare "name";
	// HasValue tells them apart.
	Value    string
	HasValue bool
}

// String gives the parameter back as "name=value" or "name".
func (a Arg) String() string {
	if !a.HasValue {
		return a.Name
	}
	return a.Name + "=" + a.Value
}

// Split cuts a kernel command line into parameters exactly as the kernel's
// parse_args and next_arg (kernel/params.c, lib/cmdline.c) do, and stops
// where the kernel stops: at a bare "--", after which everything is
// handed to init as arguments. rest is what follows that "--" ("" when
// there is none); the text is cut at the first NUL byte, as a C string is.
//
// The kernel's quoting rules, which Split reproduces with their quirks:
//
//   - Whitespace (space, tab, newline, vertical tab, form feed, carriage
//     return) separates parameters, except between double quotes. A '"'
//     anywhere toggles quoting and stays in the text, except in the two
//     places below.
//   - The name ends at the first '='; no '=', or '=' as the first
//     character, means a parameter without a value.
//   - A value that starts with '"' loses that quote, and the parameter's
//     last character too if it is '"': thaw.image="http://a/b" gives
//     http://a/b.
//   - A parameter that starts with '"' loses that quote and its last '"':
//     "thaw.image=http://a/b" gives the same.
func Split(cmdline string) (args []Arg, rest string) {
	if i := strings.IndexByte(cmdline, 0); i >= 0 {
		cmdline = cmdline[:i]
	}
	s := skipSpaces(cmdline)
	for s != "" {
		var a Arg
		a, s = nextArg(s)
		if !a.HasValue && a.Name == "--" {
			return args, s
		}
		args = append(args, a)
	}
	return args, ""
}

// nextArg is the kernel's next_arg on a Go string.
func nextArg(s string) (Arg, string) {
	inQuote, quoted := false, false
	if s[0] == '"' {
		s = s[1:]
		inQuote, quoted = true, true
	}
	i, equals := 0, 0
	for ; i < len(s); i++ {
		if isSpace(s[i]) && !inQuote {
			break
		}
		if equals == 0 && s[i] == '=' {
			equals = i
		}
		if s[i] == '"' {
			inQuote = !inQuote
		}
	}
	param := s[:i]
	rest := s[i:]
	if rest != "" {
		rest = rest[1:] // the kernel overwrites the separator with NUL
	}
	// The kernel strips quotes by writing NULs into the buffer: a NUL at
	// the end of the parameter shortens both name and value.
	end := len(param)
	if quoted && end > 0 && param[end-1] == '"' {
		end--
	}
	var a Arg
	if equals == 0 {
		a.Name = param[:end]
	} else {
		a.Name = param[:equals]
		a.HasValue = true
		v := equals + 1
		if v < len(param) && param[v] == '"' {
			v++
			if param[len(param)-1] == '"' {
				end = min(end, len(param)-1)
			}
		}
		if end < v {
			// "x=" followed by a lone quote: the kernel's NUL lands
			// before the value's start; the value is empty.
			end = v
		}
		a.Value = param[v:end]
	}
	return a, skipSpaces(rest)
}

// isSpace is the kernel's isspace for the characters that matter here
// (lib/ctype.c: _S is space, \t, \n, \v, \f, \r; 0xa0 is _S|_SP too).
func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r', 0xa0:
		return true
	}
	return false
}

func skipSpaces(s string) string {
	for s != "" && isSpace(s[0]) {
		s = s[1:]
	}
	return s
}
