package driverpack

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"testing"

	"aead.dev/minisign"
)

const (
	release  = "6.1.0-50-cloud-amd64"
	vermagic = "6.1.0-50-cloud-amd64 SMP preempt mod_unload modversions "
)

func testKey(t testing.TB) (minisign.PublicKey, minisign.PrivateKey) {
	t.Helper()
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// makePack writes a pack of the testdata modules.
func makePack(t testing.TB, priv minisign.PrivateKey, rel string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, rel)
	for _, f := range []string{"ata_generic.ko", "xt_comment.ko"} {
		if err := w.Add(fixture(t, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(BuildInfo{Suite: "bookworm"}, "2026-12-02T00:00:00Z", priv); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestModinfo(t *testing.T) {
	mi, err := ParseModinfo(fixture(t, "ata_generic.ko"))
	if err != nil {
		t.Fatal(err)
	}
	if mi.Name != "ata_generic" || mi.Vermagic != vermagic || mi.License != "GPL" {
		t.Errorf("modinfo = %+v", mi)
	}
	if len(mi.Depends) != 1 || mi.Depends[0] != "libata" {
		t.Errorf("depends = %q, want [libata]", mi.Depends)
	}
	found := false
	for _, a := range mi.Aliases {
		found = found || a == "pci:v*d*sv*sd*bc01sc01i*"
	}
	if !found {
		t.Errorf("aliases %q lack the class alias", mi.Aliases)
	}
	for name, b := range map[string][]byte{"empty": nil, "not elf": []byte("hello"), "truncated": fixture(t, "ata_generic.ko")[:4096]} {
		if _, err := ParseModinfo(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	pub, priv := testKey(t)
	b := makePack(t, priv, release)
	p, err := Read(bytes.NewReader(b), pub)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Names(), ","); got != "ata_generic,xt_comment" {
		t.Errorf("names %s", got)
	}
	if !bytes.Equal(p.Module("ata_generic"), fixture(t, "ata_generic.ko")) {
		t.Error("ata_generic differs")
	}
	if p.Header.Vermagic != vermagic || p.Header.Built.Suite != "bookworm" {
		t.Errorf("header %+v", p.Header)
	}
	if err := p.Check(release, vermagic); err != nil {
		t.Error(err)
	}
	if err := p.Check("6.1.0-41-cloud-amd64", vermagic); !errors.Is(err, ErrRelease) {
		t.Errorf("other release: %v", err)
	}
	if err := p.Check(release, "6.1.0-50-cloud-amd64 SMP mod_unload "); !errors.Is(err, ErrVermagic) {
		t.Errorf("other vermagic: %v", err)
	}
}

// rewrite rebuilds a pack's tar with edit applied to its members.
func rewrite(t *testing.T, b []byte, edit func(name string, data []byte) (string, []byte, bool)) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var data bytes.Buffer
		data.ReadFrom(tr)
		name, d, keep := edit(h.Name, data.Bytes())
		if !keep {
			continue
		}
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(d)), Typeflag: tar.TypeReg})
		tw.Write(d)
	}
	tw.Close()
	return out.Bytes()
}

// withExtra is pack b with one more member after its modules.
func withExtra(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var d bytes.Buffer
		d.ReadFrom(tr)
		tw.WriteHeader(h)
		tw.Write(d.Bytes())
	}
	tw.WriteHeader(&tar.Header{Name: "modules/evil.ko", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte{0})
	tw.Close()
	return out.Bytes()
}

func TestRefusals(t *testing.T) {
	pub, priv := testKey(t)
	other, _ := testKey(t)
	good := makePack(t, priv, release)
	flip := func(at int) func(string, []byte) (string, []byte, bool) {
		return func(name string, d []byte) (string, []byte, bool) {
			if name == "modules/ata_generic.ko" {
				d = bytes.Clone(d)
				d[at] ^= 1
			}
			return name, d, true
		}
	}
	for _, tc := range []struct {
		name string
		b    []byte
		pub  minisign.PublicKey
		want error // nil: any error
	}{
		{"wrong key", good, other, ErrSignature},
		{"unsigned", rewrite(t, good, func(n string, d []byte) (string, []byte, bool) { return n, d, n != sigName }), pub, ErrUnsigned},
		{"header altered", rewrite(t, good, func(n string, d []byte) (string, []byte, bool) {
			if n == headerName {
				d = bytes.Replace(d, []byte("6.1.0-50"), []byte("6.1.0-51"), 1)
			}
			return n, d, true
		}), pub, ErrSignature},
		{"flipped module byte", rewrite(t, good, flip(20000)), pub, nil},
		{"module renamed", rewrite(t, good, func(n string, d []byte) (string, []byte, bool) {
			return strings.Replace(n, "ata_generic", "ata_other", 1), d, true
		}), pub, nil},
		{"module missing", rewrite(t, good, func(n string, d []byte) (string, []byte, bool) { return n, d, n != "modules/xt_comment.ko" }), pub, nil},
		{"extra member", withExtra(t, good), pub, nil},
		{"truncated", good[:len(good)/2], pub, nil},
		{"empty", nil, pub, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Read(bytes.NewReader(tc.b), tc.pub)
			if err == nil {
				t.Fatalf("read: %v", p.Names())
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestWriterRefuses(t *testing.T) {
	_, priv := testKey(t)
	w := NewWriter(&bytes.Buffer{}, release)
	if err := w.Add([]byte("not a module")); err == nil {
		t.Error("added a non-module")
	}
	if err := w.Close(BuildInfo{}, "", priv); err == nil {
		t.Error("wrote an empty pack")
	}
	w = NewWriter(&bytes.Buffer{}, release)
	if err := w.Add(fixture(t, "xt_comment.ko")); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(fixture(t, "xt_comment.ko")); err == nil {
		t.Error("added a module twice")
	}
}

func FuzzRead(f *testing.F) {
	pub, priv := testKey(f)
	f.Add(makePack(f, priv, release))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Read(bytes.NewReader(b), pub)
		if err == nil && p.Check(p.Header.Release, p.Header.Vermagic) != nil {
			t.Fatal("a pack read does not check against its own header")
		}
	})
}

func FuzzModinfo(f *testing.F) {
	f.Add(fixture(f, "xt_comment.ko"))
	f.Fuzz(func(t *testing.T, b []byte) {
		mi, err := ParseModinfo(b)
		if err == nil && (mi.Name == "" || mi.Vermagic == "") {
			t.Fatalf("accepted %+v", mi)
		}
	})
}
