package driverpack

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"aead.dev/minisign"
)

// Format is the pack format this package writes and reads.
const Format = 1

// Limits, checked before anything of that size is allocated.
const (
	MaxHeader  = 1 << 20  // pack.json
	maxSig     = 4 << 10  // pack.json.minisig
	MaxModule  = 32 << 20 // one module
	MaxModules = 64       // modules in one pack
	MaxTotal   = 96 << 20 // all modules together
)

// Member names.
const (
	headerName = "pack.json"
	sigName    = "pack.json.minisig"
	moduleDir  = "modules/"
)

// Header is pack.json.
type Header struct {
	Format int `json:"format"`
	// Release is the kernel release (uname -r) the modules were built
	// for, and Vermagic the vermagic string they carry; a kernel loads
	// only modules with its own.
	Release  string    `json:"release"`
	Vermagic string    `json:"vermagic"`
	Created  string    `json:"created,omitempty"` // RFC 3339
	Built    BuildInfo `json:"built"`
	Modules  []Module  `json:"modules"`
}

// BuildInfo says how the modules were built.
type BuildInfo struct {
	Suite    string `json:"suite,omitempty"`    // bookworm, trixie
	Headers  string `json:"headers,omitempty"`  // linux-headers-RELEASE=VERSION
	Source   string `json:"source,omitempty"`   // linux-source-X=VERSION
	Compiler string `json:"compiler,omitempty"` // gcc --version, first line
}

// Module is one module of the pack.
type Module struct {
	Name    string   `json:"name"` // as the kernel names it: ahci, e1000e
	Size    int64    `json:"size"`
	SHA256  string   `json:"sha256"`
	Aliases []string `json:"aliases,omitempty"` // modinfo alias=
	Depends []string `json:"depends,omitempty"` // modinfo depends=
	License string   `json:"license,omitempty"`
}

// Pack is a verified pack.
type Pack struct {
	Header    Header
	Signature minisign.Signature
	modules   map[string][]byte
}

// Errors a caller matches.
var (
	ErrUnsigned  = errors.New("the pack carries no signature")
	ErrSignature = errors.New("the pack's signature does not verify with the trusted key (another key, or the pack was altered)")
	ErrRelease   = errors.New("the pack was built for another kernel release")
	ErrVermagic  = errors.New("the pack's vermagic is not the image kernel's")
)

// FormatError is a pack that does not follow the format; Offset is where
// in the pack stream the member at fault begins.
type FormatError struct {
	Offset int64
	Field  string
	Err    error
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("driver pack: offset %d: %s: %v", e.Offset, e.Field, e.Err)
}

func (e *FormatError) Unwrap() error { return e.Err }

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Read reads and verifies a pack with the trusted key pub. It refuses a
// pack without a signature (ErrUnsigned) or one the key does not verify
// (ErrSignature) before parsing the header, and any module that is not
// what the signed header says.
func Read(r io.Reader, pub minisign.PublicKey) (*Pack, error) {
	cr := &countReader{r: r}
	tr := tar.NewReader(cr)
	// next reads the next member, which must be want (a member of
	// modules/ when want is that directory), of at most max bytes.
	next := func(want string, max int64) (b []byte, off int64, name string, err error) {
		off = cr.n
		h, err := tr.Next()
		if err == io.EOF {
			return nil, off, "", &FormatError{off, want, io.ErrUnexpectedEOF}
		}
		if err != nil {
			return nil, off, "", &FormatError{off, want, err}
		}
		if h.Name != want && !(want == moduleDir && strings.HasPrefix(h.Name, moduleDir)) {
			return nil, off, h.Name, &FormatError{off, want, fmt.Errorf("member %q where %q belongs", h.Name, want)}
		}
		if h.Typeflag != tar.TypeReg {
			return nil, off, h.Name, &FormatError{off, h.Name, fmt.Errorf("type %q is not a regular file", h.Typeflag)}
		}
		if h.Size < 0 || h.Size > max {
			return nil, off, h.Name, &FormatError{off, h.Name, fmt.Errorf("%d bytes, at most %d allowed", h.Size, max)}
		}
		b = make([]byte, h.Size)
		if _, err := io.ReadFull(tr, b); err != nil {
			return nil, off, h.Name, &FormatError{off, h.Name, fmt.Errorf("truncated: %w", err)}
		}
		return b, off, h.Name, nil
	}
	raw, _, _, err := next(headerName, MaxHeader)
	if err != nil {
		return nil, err
	}
	sigb, off, name, err := next(sigName, maxSig)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || strings.HasPrefix(name, moduleDir) {
			return nil, fmt.Errorf("%w (offset %d)", ErrUnsigned, off)
		}
		return nil, err
	}
	p := &Pack{modules: map[string][]byte{}}
	if err := p.Signature.UnmarshalText(sigb); err != nil {
		return nil, &FormatError{off, sigName, err}
	}
	if !minisign.Verify(pub, raw, sigb) {
		return nil, ErrSignature
	}
	if err := json.Unmarshal(raw, &p.Header); err != nil {
		return nil, &FormatError{0, headerName, err}
	}
	h := &p.Header
	if err := h.check(); err != nil {
		return nil, &FormatError{0, headerName, err}
	}
	for i, m := range h.Modules {
		b, off, name, err := next(moduleDir, MaxModule)
		if err != nil {
			return nil, err
		}
		field := fmt.Sprintf("module %d (%s)", i, m.Name)
		if want := moduleDir + m.Name + ".ko"; name != want {
			return nil, &FormatError{off, field, fmt.Errorf("member is not %s", want)}
		}
		if int64(len(b)) != m.Size {
			return nil, &FormatError{off, field, fmt.Errorf("%d bytes, the header says %d", len(b), m.Size)}
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != m.SHA256 {
			return nil, &FormatError{off, field, fmt.Errorf("SHA-256 %x, the header says %s", sum, m.SHA256)}
		}
		mi, err := ParseModinfo(b)
		if err != nil {
			return nil, &FormatError{off, field, err}
		}
		if mi.Name != m.Name || mi.Vermagic != h.Vermagic {
			return nil, &FormatError{off, field, fmt.Errorf("its modinfo says name %q, vermagic %q; the header says %q, %q", mi.Name, mi.Vermagic, m.Name, h.Vermagic)}
		}
		p.modules[m.Name] = b
	}
	off = cr.n
	if hdr, err := tr.Next(); err != io.EOF {
		if err != nil {
			return nil, &FormatError{off, "end", err}
		}
		return nil, &FormatError{off, "end", fmt.Errorf("member %q after the last module", hdr.Name)}
	}
	return p, nil
}

// check validates a header's fields.
func (h *Header) check() error {
	if h.Format != Format {
		return fmt.Errorf("format %d, this thaw reads %d", h.Format, Format)
	}
	if h.Release == "" || strings.ContainsAny(h.Release, "/ \x00") {
		return fmt.Errorf("release %q", h.Release)
	}
	if h.Vermagic == "" {
		return errors.New("no vermagic")
	}
	if len(h.Modules) == 0 || len(h.Modules) > MaxModules {
		return fmt.Errorf("%d modules, 1 to %d allowed", len(h.Modules), MaxModules)
	}
	var total int64
	seen := map[string]bool{}
	for i, m := range h.Modules {
		if !validName(m.Name) || seen[m.Name] {
			return fmt.Errorf("module %d: name %q is empty, repeated or not a module name", i, m.Name)
		}
		seen[m.Name] = true
		if m.Size <= 0 || m.Size > MaxModule {
			return fmt.Errorf("module %s: size %d", m.Name, m.Size)
		}
		total += m.Size
		if b, err := hex.DecodeString(m.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("module %s: sha256 %q", m.Name, m.SHA256)
		}
	}
	if total > MaxTotal {
		return fmt.Errorf("modules take %d bytes, at most %d allowed", total, MaxTotal)
	}
	return nil
}

// validName: a kernel module name (letters, digits, '_').
func validName(s string) bool {
	if s == "" || len(s) > 55 {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// Check compares the pack with the image kernel that would load its
// modules: its release and vermagic (from one of its own modules).
func (p *Pack) Check(release, vermagic string) error {
	if p.Header.Release != release {
		return fmt.Errorf("%w: %s, the image kernel is %s", ErrRelease, p.Header.Release, release)
	}
	if vermagic != "" && p.Header.Vermagic != vermagic {
		return fmt.Errorf("%w: %q against %q", ErrVermagic, p.Header.Vermagic, vermagic)
	}
	return nil
}

// Module returns module name's object file (nil if the pack has none).
func (p *Pack) Module(name string) []byte { return p.modules[name] }

// Names lists the pack's modules in header order.
func (p *Pack) Names() []string {
	var out []string
	for _, m := range p.Header.Modules {
		out = append(out, m.Name)
	}
	return out
}

// Modinfo is what a module's .modinfo section says.
type Modinfo struct {
	Name     string
	Vermagic string
	License  string
	Aliases  []string
	Depends  []string
}

// Writer makes a pack.
type Writer struct {
	w       io.Writer
	release string
	mods    []Module
	data    [][]byte
	vm      string
}

// NewWriter returns a Writer of a pack for kernel release.
func NewWriter(w io.Writer, release string) *Writer {
	return &Writer{w: w, release: release}
}

// Add adds a module object file; its .modinfo names it, and its vermagic
// must be that of the modules added before it.
func (w *Writer) Add(ko []byte) error {
	mi, err := ParseModinfo(ko)
	if err != nil {
		return err
	}
	if w.vm == "" {
		w.vm = mi.Vermagic
	} else if mi.Vermagic != w.vm {
		return fmt.Errorf("module %s: vermagic %q, the pack's modules have %q", mi.Name, mi.Vermagic, w.vm)
	}
	for _, m := range w.mods {
		if m.Name == mi.Name {
			return fmt.Errorf("module %s is already in the pack", mi.Name)
		}
	}
	sum := sha256.Sum256(ko)
	w.mods = append(w.mods, Module{Name: mi.Name, Size: int64(len(ko)), SHA256: hex.EncodeToString(sum[:]),
		Aliases: mi.Aliases, Depends: mi.Depends, License: mi.License})
	w.data = append(w.data, ko)
	return nil
}

// Close writes the pack: the header (with built and created), its
// signature by key, and the modules.
func (w *Writer) Close(built BuildInfo, created string, key minisign.PrivateKey) error {
	h := Header{Format: Format, Release: w.release, Vermagic: w.vm, Created: created, Built: built, Modules: w.mods}
	if err := h.check(); err != nil {
		return fmt.Errorf("driver pack: %w", err)
	}
	raw, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	sig := minisign.SignWithComments(key, raw, "thaw driver pack "+w.release, "signature from thaw driverpack")
	tw := tar.NewWriter(w.w)
	put := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := put(headerName, raw); err != nil {
		return err
	}
	if err := put(sigName, sig); err != nil {
		return err
	}
	for i, m := range w.mods {
		if err := put(moduleDir+m.Name+".ko", w.data[i]); err != nil {
			return err
		}
	}
	return tw.Close()
}

// FileName is a pack's file name in a store: RELEASE.pack.
func FileName(release string) string { return path.Base(release) + ".pack" }

// splitModinfo splits a .modinfo section into its key=value records.
func splitModinfo(b []byte) map[string][]string {
	out := map[string][]string{}
	for _, rec := range bytes.Split(b, []byte{0}) {
		k, v, ok := strings.Cut(string(rec), "=")
		if ok && k != "" {
			out[k] = append(out[k], v)
		}
	}
	return out
}
