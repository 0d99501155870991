package httpra

import "testing"

func TestParseContentRange(t *testing.T) {
	cases := []struct {
		in   string
		want contentRange
		ok   bool
	}{
		{"bytes 0-99/1000", contentRange{0, 99, 1000, false}, true},
		{"bytes 999-999/1000", contentRange{999, 999, 1000, false}, true},
		{"BYTES 5-9/*", contentRange{5, 9, -1, false}, true},
		{"bytes */1000", contentRange{0, 0, 1000, true}, true},
		{"bytes */0", contentRange{0, 0, 0, true}, true},
		{"  bytes   0-0/1 ", contentRange{0, 0, 1, false}, true},
		{"bytes 0-9223372036854775806/9223372036854775807", contentRange{0, 1<<63 - 2, 1<<63 - 1, false}, true},
		{"", contentRange{}, false},
		{"bytes", contentRange{}, false},
		{"bits 0-1/2", contentRange{}, false},
		{"bytes 0-99", contentRange{}, false},
		{"bytes 0-99/50", contentRange{}, false},
		{"bytes 100-99/1000", contentRange{}, false},
		{"bytes -1-5/10", contentRange{}, false},
		{"bytes +1-5/10", contentRange{}, false},
		{"bytes 1-+5/10", contentRange{}, false},
		{"bytes 0-1/-5", contentRange{}, false},
		{"bytes */*", contentRange{}, false},
		{"bytes 0-99999999999999999999/1", contentRange{}, false},
		{"bytes 0x1-2/3", contentRange{}, false},
	}
	for _, c := range cases {
		got, err := parseContentRange(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("parseContentRange(%q) = %+v, %v; want %+v ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

// FuzzContentRange: the parser never panics, what it accepts is coherent,
// and its canonical form parses back to the same value.
func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/1000", "bytes */1000", "bytes 5-9/*", "bytes 0-0/1", "bytes 1-2", "bytes -/", "bytes 9223372036854775807-9223372036854775807/*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cr, err := parseContentRange(s)
		if err != nil {
			return
		}
		if cr.unsatisfied {
			if cr.total < 0 {
				t.Fatalf("%q: unsatisfied without a total", s)
			}
		} else if cr.first < 0 || cr.last < cr.first || (cr.total >= 0 && cr.last >= cr.total) || cr.total < -1 {
			t.Fatalf("%q parsed to an incoherent %+v", s, cr)
		}
		back, err := parseContentRange(cr.String())
		if err != nil || back != cr {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, cr, cr.String(), back, err)
		}
	})
}
