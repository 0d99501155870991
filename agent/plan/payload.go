package plan

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/thawlinux/thaw/images/driverpack"
	"github.com/thawlinux/thaw/images/mailbox"
	"github.com/thawlinux/thaw/images/manifest"
)

// maxModule bounds one decompressed module.
const maxModule = 64 << 20

// Payload encodes what the agent writes into the image's mailbox: the plan
// (JSON) and the module files it names, in load order: the image kernel's
// read from the bundle's modules tree (the tar r of the "modules" stream)
// and decompressed, the driver pack's from pack. It refuses a payload the
// capture's mailbox cannot hold.
func (p *Plan) Payload(m *manifest.Manifest, modules io.Reader, pack *driverpack.Pack) ([]byte, error) {
	if m.Mailbox == nil || len(m.Mailbox.PFNs) == 0 {
		return nil, fmt.Errorf("the bundle records no mailbox (made by thaw export or an older capture): the device plan cannot reach the resumed server")
	}
	nonce, err := Nonce(m)
	if err != nil {
		return nil, err
	}
	w := mailbox.NewWriter(nonce)
	js, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if err := w.Add(mailbox.KindPlan, "plan.json", js); err != nil {
		return nil, err
	}
	var own []string
	for _, f := range p.Modules {
		if !IsPackFile(f) {
			own = append(own, f)
		}
	}
	files := map[string][]byte{}
	if len(own) > 0 {
		if modules == nil {
			return nil, fmt.Errorf("the bundle carries no modules tree for %s", strings.Join(own, " "))
		}
		var err error
		if files, err = moduleFiles(modules, own); err != nil {
			return nil, err
		}
	}
	for _, f := range p.Modules {
		if IsPackFile(f) {
			var b []byte
			if pack != nil {
				b = pack.Module(ModuleName(f))
			}
			if b == nil {
				return nil, fmt.Errorf("the plan loads %s from the driver pack, which does not hold it", ModuleName(f))
			}
			files[f] = b
		}
	}
	if len(p.Modules) > 0 {
		for _, f := range p.Modules {
			if err := w.Add(mailbox.KindModule, ModuleName(f), files[f]); err != nil {
				return nil, fmt.Errorf("module %s: %w", f, err)
			}
		}
	}
	b, err := w.Bytes()
	if err != nil {
		return nil, err
	}
	if room := len(m.Mailbox.PFNs) * mailbox.PageSize; len(b) > room {
		return nil, fmt.Errorf("the device plan and its modules take %d KiB, the capture's mailbox holds %d KiB: capture again with a larger --mailbox", len(b)>>10, room>>10)
	}
	return b, nil
}

// Nonce is the capture's mailbox nonce.
func Nonce(m *manifest.Manifest) ([16]byte, error) {
	var n [16]byte
	b, err := hex.DecodeString(m.Mailbox.Nonce)
	if err != nil || len(b) != 16 {
		return n, fmt.Errorf("manifest: mailbox nonce %q is not 16 hex bytes", m.Mailbox.Nonce)
	}
	copy(n[:], b)
	return n, nil
}

// moduleFiles reads the named files (relative to the modules tree,
// RELEASE/ stripped) from a modules tar, decompressed.
func moduleFiles(r io.Reader, want []string) (map[string][]byte, error) {
	need := map[string]bool{}
	for _, f := range want {
		need[f] = true
	}
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for len(out) < len(need) {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("modules tar: %w", err)
		}
		// RELEASE/kernel/drivers/… → kernel/drivers/…
		_, rel, ok := strings.Cut(h.Name, "/")
		if !ok || !need[rel] || h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := Decompress(path.Base(rel), io.LimitReader(tr, maxModule))
		if err != nil {
			return nil, fmt.Errorf("modules tar: %s: %w", h.Name, err)
		}
		out[rel] = b
	}
	for _, f := range want {
		if _, ok := out[f]; !ok {
			return nil, fmt.Errorf("the bundle's modules tree has no %s", f)
		}
	}
	return out, nil
}

// Decompress undoes a module file's compression (.ko.xz, .ko.zst, .ko.gz;
// name is the file's name) and checks that the result is an ELF object of
// at most 64 MiB.
func Decompress(name string, r io.Reader) ([]byte, error) {
	var dr io.Reader
	switch {
	case strings.HasSuffix(name, ".xz"):
		x, err := xz.NewReader(r)
		if err != nil {
			return nil, err
		}
		dr = x
	case strings.HasSuffix(name, ".zst"):
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer z.Close()
		dr = z
	case strings.HasSuffix(name, ".gz"):
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		dr = g
	default:
		dr = r
	}
	b, err := io.ReadAll(io.LimitReader(dr, maxModule+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxModule || !bytes.HasPrefix(b, []byte("\x7fELF")) {
		return nil, fmt.Errorf("not a module (%d bytes, no ELF header)", len(b))
	}
	return b, nil
}
