package bootparam

import (
	"reflect"
	"testing"
)

func TestSplit(t *testing.T) {
	v := func(n, val string) Arg { return Arg{Name: n, Value: val, HasValue: true} }
	b := func(n string) Arg { return Arg{Name: n} }
	// Expected results follow next_arg in lib/cmdline.c line by line.
	for _, tc := range []struct {
		in   string
		want []Arg
		rest string
	}{
		{"", nil, ""},
		{"  \t\n", nil, ""},
		{"ro quiet", []Arg{b("ro"), b("quiet")}, ""},
		{"root=/dev/vda1 console=ttyS0,115200n8\n", []Arg{v("root", "/dev/vda1"), v("console", "ttyS0,115200n8")}, ""},
		{"a=b=c", []Arg{v("a", "b=c")}, ""},
		{"a=", []Arg{v("a", "")}, ""},
		{"=a", []Arg{b("=a")}, ""},        // '=' at offset 0 does not count
		{"=a=b", []Arg{v("=a", "b")}, ""}, // ... the next one does
		// Quoted value: both quotes go.
		{`thaw.image="http://h/a b"`, []Arg{v("thaw.image", "http://h/a b")}, ""},
		// Quoted parameter: both quotes go.
		{`"thaw.image=http://h/a b" ro`, []Arg{v("thaw.image", "http://h/a b"), b("ro")}, ""},
		// Quotes inside a value stay.
		{`a=x"y z"w next`, []Arg{v("a", `x"y z"w`), b("next")}, ""},
		// Opening quote without closing: quoted to the end.
		{`a="x y`, []Arg{v("a", "x y")}, ""},
		// Value quote only at the start: the trailing char stays unless '"'.
		{`a="x"y`, []Arg{v("a", `x"y`)}, ""},
		// Both forms at once strip one quote each end, no more.
		{`"x="y""`, []Arg{v("x", `y"`)}, ""},
		{`a="`, []Arg{v("a", "")}, ""},
		{`a=""`, []Arg{v("a", "")}, ""},
		{`""`, []Arg{b("")}, ""},
		{`"`, []Arg{b("")}, ""},
		{`"ro"`, []Arg{b("ro")}, ""},
		// "--" ends the kernel's parameters.
		{"ro -- thaw.image=x single", []Arg{b("ro")}, "thaw.image=x single"},
		{`ro "--" x`, []Arg{b("ro")}, "x"},
		{"ro --=1 x", []Arg{b("ro"), v("--", "1"), b("x")}, ""},
		{"ro --", []Arg{b("ro")}, ""},
		// NUL ends the string.
		{"a=1\x00b=2", []Arg{v("a", "1")}, ""},
		// The kernel's isspace includes 0xa0.
		{"a=1\xa0b", []Arg{v("a", "1"), b("b")}, ""},
	} {
		got, rest := Split(tc.in)
		if !reflect.DeepEqual(got, tc.want) || rest != tc.rest {
			t.Errorf("Split(%q) = %q, %q; want %q, %q", tc.in, got, rest, tc.want, tc.rest)
		}
	}
}
