package dm

import (
	"reflect"
	"strings"
	"testing"
)

func dev(ma, mi uint32) uint64 { return mkdev(ma, mi) }

func TestParseDev(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want uint64
	}{
		{"254:1", true, dev(254, 1)},
		{"8:0", true, dev(8, 0)},
		{"259:1048575", true, dev(259, 1<<20-1)},
		{"4095:0", true, dev(4095, 0)},
		{"0254:01", true, dev(254, 1)},
		{"4096:0", false, 0},
		{"8:1048576", false, 0},
		{"99999999999999999999:1", false, 0},
		{"254:", false, 0},
		{":1", false, 0},
		{"254", false, 0},
		{"254:1:2", false, 0},
		{"+254:1", false, 0},
		{"-1:1", false, 0},
		{"254:1 ", false, 0},
		{":64:logon:key", false, 0},
		{"/dev/vda2", false, 0},
		{"", false, 0},
	} {
		got, ok := ParseDev(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseDev(%q) = %#x, %v; want %#x, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	for _, d := range []uint64{dev(254, 1), dev(8, 300), dev(259, 1<<20-1), dev(0, 0)} {
		s := FormatDev(d)
		if back, ok := ParseDev(s); !ok || back != d {
			t.Errorf("FormatDev(%#x) = %q parses to %#x, %v", d, s, back, ok)
		}
	}
	if got := FormatDev(dev(8, 300)); got != "8:300" {
		t.Errorf("FormatDev(8:300) = %q", got)
	}
}

func TestParseTable(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []Target
		err  string
	}{
		{"empty", "", nil, ""},
		{"blank lines", "\n  \n", nil, ""},
		{"linear", "0 3145728 linear 254:1 2048", []Target{{0, 3145728, "linear", "254:1 2048"}}, ""},
		{"dmsetup output", "0 3145728 linear 254:1 2048\n3145728 1048576 linear 254:2 0\n",
			[]Target{{0, 3145728, "linear", "254:1 2048"}, {3145728, 1048576, "linear", "254:2 0"}}, ""},
		{"no params, dmsetup's trailing space", "0 8 zero \n8 8 error",
			[]Target{{0, 8, "zero", ""}, {8, 8, "error", ""}}, ""},
		{"inner spacing kept", "0 16 striped  2 128\t254:1 0  254:2 0 ",
			[]Target{{0, 16, "striped", "2 128\t254:1 0  254:2 0"}}, ""},
		{"crlf", "0 8 linear 8:1 0\r\n", []Target{{0, 8, "linear", "8:1 0"}}, ""},
		{"crypt", "0 409600 crypt aes-xts-plain64 :64:logon:cryptsetup:LUKS2-0f0e-d0 0 254:1 32768 1 allow_discards",
			[]Target{{0, 409600, "crypt", "aes-xts-plain64 :64:logon:cryptsetup:LUKS2-0f0e-d0 0 254:1 32768 1 allow_discards"}}, ""},
		{"max sectors", "18446744073709551615 1 zero", []Target{{1<<64 - 1, 1, "zero", ""}}, ""},
		{"bad start", "x 8 zero", nil, "line 1: start sector"},
		{"negative", "-1 8 zero", nil, "start sector"},
		{"overflow", "0 18446744073709551616 zero", nil, "length"},
		{"no length", "0", nil, "length"},
		{"no type", "0 8", nil, "no type"},
		{"long type", "0 8 abcdefghijklmnop", nil, "longer than 15"},
		{"second line", "0 8 zero\n8 y zero", nil, "line 2"},
		{"nul", "0 8 linear 8:1\x000", nil, "NUL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTable(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestFormatTable(t *testing.T) {
	tab := []Target{
		{0, 3145728, "linear", "254:1 2048"},
		{3145728, 8, "zero", ""},
		{3145736, 256, "striped", "2 128 254:1 0 254:2 0"},
	}
	want := "0 3145728 linear 254:1 2048\n3145728 8 zero\n3145736 256 striped 2 128 254:1 0 254:2 0"
	if got := FormatTable(tab); got != want {
		t.Errorf("FormatTable = %q\nwant %q", got, want)
	}
	if back, err := ParseTable(want); err != nil || !reflect.DeepEqual(back, tab) {
		t.Errorf("round trip: %v, %v", back, err)
	}
	if got := FormatTable(nil); got != "" {
		t.Errorf("FormatTable(nil) = %q", got)
	}
}

func TestRetarget(t *testing.T) {
	vd, nv := dev(254, 1), dev(259, 1)
	moved := map[uint64]uint64{vd: nv, dev(254, 2): dev(259, 2)}
	for _, tc := range []struct {
		name    string
		in      string
		moved   map[uint64]uint64
		want    string
		changed bool
	}{
		{"linear", "0 3145728 linear 254:1 2048", moved, "0 3145728 linear 259:1 2048", true},
		{"other disk", "0 3145728 linear 8:1 2048", moved, "0 3145728 linear 8:1 2048", false},
		{"minor is not a prefix match", "0 8 linear 254:10 0\n8 8 linear 2254:1 0", moved, "0 8 linear 254:10 0\n8 8 linear 2254:1 0", false},
		{"striped", "0 1024 striped 2 128 254:1 0 254:2 0", moved, "0 1024 striped 2 128 259:1 0 259:2 0", true},
		{"mirror", "0 2048 mirror core 1 1024 2 254:1 0 254:3 0 1 handle_errors", moved,
			"0 2048 mirror core 1 1024 2 259:1 0 254:3 0 1 handle_errors", true},
		{"crypt keyring", "0 409600 crypt aes-xts-plain64 :64:logon:cryptsetup:LUKS2-254:1-d0 0 254:1 32768 1 allow_discards", moved,
			"0 409600 crypt aes-xts-plain64 :64:logon:cryptsetup:LUKS2-254:1-d0 0 259:1 32768 1 allow_discards", true},
		{"crypt hex key", "0 8 crypt aes-cbc-essiv:sha256 0123456789abcdef0123456789abcdef 0 254:1 0", moved,
			"0 8 crypt aes-cbc-essiv:sha256 0123456789abcdef0123456789abcdef 0 259:1 0", true},
		{"thin-pool", "0 20971520 thin-pool 254:1 254:2 128 0 1 skip_block_zeroing", moved,
			"0 20971520 thin-pool 259:1 259:2 128 0 1 skip_block_zeroing", true},
		{"thin names a dm device", "0 2097152 thin 253:4 1", moved, "0 2097152 thin 253:4 1", false},
		{"raid with missing metadata", "0 1024 raid raid1 3 0 region_size 1024 2 - 254:1 - 254:2", moved,
			"0 1024 raid raid1 3 0 region_size 1024 2 - 259:1 - 259:2", true},
		{"cache feature args", "0 8 cache 254:1 254:2 254:3 512 1 writeback smq 2 migration_threshold 2048", moved,
			"0 8 cache 259:1 259:2 254:3 512 1 writeback smq 2 migration_threshold 2048", true},
		{"whitespace kept", "0 16 striped  2 128\t254:1 0  254:2 0", moved, "0 16 striped 2 128\t259:1 0  259:2 0", true},
		{"swap", "0 8 linear 8:0 0\n8 8 linear 8:16 0", map[uint64]uint64{dev(8, 0): dev(8, 16), dev(8, 16): dev(8, 0)},
			"0 8 linear 8:16 0\n8 8 linear 8:0 0", true},
		{"to itself", "0 8 linear 254:1 0", map[uint64]uint64{vd: vd}, "0 8 linear 254:1 0", false},
		{"leading zeros", "0 8 linear 0254:001 0", moved, "0 8 linear 259:1 0", true},
		{"large minor", "0 8 linear 254:300 0", map[uint64]uint64{dev(254, 300): dev(259, 1<<19)}, "0 8 linear 259:524288 0", true},
		{"no moves", "0 8 linear 254:1 0", nil, "0 8 linear 254:1 0", false},
		{"params empty", "0 8 zero", moved, "0 8 zero", false},
		{"empty", "", moved, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := ParseTable(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			orig := FormatTable(in)
			out, changed := Retarget(in, tc.moved)
			if got := FormatTable(out); got != tc.want || changed != tc.changed {
				t.Errorf("Retarget = %q, %v\nwant       %q, %v", got, changed, tc.want, tc.changed)
			}
			if FormatTable(in) != orig {
				t.Error("Retarget changed its input")
			}
			if len(out) != len(in) {
				t.Errorf("%d targets out of %d", len(out), len(in))
			}
		})
	}
}

func TestDevs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []uint64
	}{
		{"0 8 linear 254:1 2048", []uint64{dev(254, 1)}},
		{"0 8 striped 2 128 254:1 0 254:2 0\n8 8 linear 254:1 9", []uint64{dev(254, 1), dev(254, 2)}},
		{"0 8 crypt aes-xts-plain64 :64:logon:k 0 259:3 4096 1 sector_size:4096", []uint64{dev(259, 3)}},
		{"0 8 thin-pool 253:2 253:3 128 0", []uint64{dev(253, 2), dev(253, 3)}},
		{"0 8 zero", nil},
	} {
		tab, err := ParseTable(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := Devs(tab); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Devs(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseTable(f *testing.F) {
	for _, s := range []string{
		"",
		"0 3145728 linear 254:1 2048",
		"0 3145728 linear 254:1 2048\n3145728 1048576 linear 254:2 0\n",
		"0 8 zero \n",
		"0 1024 striped 2 128 254:1 0 254:2 0",
		"0 409600 crypt aes-xts-plain64 :64:logon:cryptsetup:LUKS2-x-d0 0 254:1 32768 1 allow_discards",
		"0 409600 crypt aes-xts-plain64 00112233445566778899aabbccddeeff 0 254:1 32768",
		"0 20971520 thin-pool 254:1 254:2 128 0 1 skip_block_zeroing",
		"x y z",
		"\t0\t8\tlinear\t8:1\t0\r\n",
	} {
		f.Add(s)
	}
	moved := map[uint64]uint64{dev(254, 1): dev(259, 1), dev(259, 1): dev(254, 1)}
	f.Fuzz(func(t *testing.T, s string) {
		tab, err := ParseTable(s)
		if err != nil {
			return
		}
		for _, x := range tab {
			if err := x.check(); err != nil {
				t.Fatalf("parsed an invalid target %#v: %v", x, err)
			}
		}
		text := FormatTable(tab)
		back, err := ParseTable(text)
		if err != nil {
			t.Fatalf("ParseTable(FormatTable(%#v)) = %v", tab, err)
		}
		if len(back) != len(tab) || (len(tab) > 0 && !reflect.DeepEqual(back, tab)) {
			t.Fatalf("round trip\n%#v\n%#v", tab, back)
		}
		if FormatTable(back) != text {
			t.Fatalf("format not stable: %q", text)
		}
		// Redact keeps the shape: as many targets and words, and a
		// crypt target's key word (not a keyring reference) is hidden.
		red := Redact(tab)
		for k := range tab {
			a, b := words(tab[k].Params), words(red[k].Params)
			if len(a) != len(b) || red[k].Type != tab[k].Type || red[k].Start != tab[k].Start {
				t.Fatalf("redacted %#v to %#v", tab[k], red[k])
			}
			if tab[k].Type == "crypt" && len(a) > 1 && a[1] != "-" && !strings.HasPrefix(a[1], ":") && b[1] != Hidden {
				t.Fatalf("crypt key %q shown as %q", a[1], b[1])
			}
		}
		if _, err := ParseTable(RedactTable(s)); err != nil {
			t.Fatalf("RedactTable(%q) does not parse: %v", s, err)
		}
		// Retarget rewrites exactly the device words of moved devices.
		out, changed := Retarget(tab, moved)
		want := false
		for k := range tab {
			a, b := words(tab[k].Params), words(out[k].Params)
			if len(a) != len(b) {
				t.Fatalf("words %q became %q", a, b)
			}
			for i := range a {
				d, ok := ParseDev(a[i])
				nd, moves := moved[d]
				switch {
				case ok && moves:
					want = true
					if b[i] != FormatDev(nd) {
						t.Fatalf("%q became %q, want %s", a[i], b[i], FormatDev(nd))
					}
				case a[i] != b[i]:
					t.Fatalf("%q became %q", a[i], b[i])
				}
			}
			tab[k].Params, out[k].Params = "", ""
		}
		if changed != want || !reflect.DeepEqual(tab, out) {
			t.Fatalf("changed %v, want %v; rest %#v vs %#v", changed, want, tab, out)
		}
	})
}

func words(s string) []string {
	var w []string
	tokens(s, func(i, j int) { w = append(w, s[i:j]) })
	return w
}
