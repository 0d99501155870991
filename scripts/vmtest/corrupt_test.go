//go:build vm

package vmtest

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/images/swsusp"
)

// TestInspectCorruptKernelImage damages copies of a kernel-written LZO image
// (Debian 13) in a data page, a swap_map page, a metadata page and by
// truncation; thaw inspect must call each corrupt, name the place, and exit 3.
func TestInspectCorruptKernelImage(t *testing.T) {
	t.Parallel()
	h := hibernate(t, "debian13-cloud", false)
	f, err := os.Open(h.swap)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	r, err := swsusp.NewReader(f, st.Size(), 0)
	if err != nil {
		t.Fatal(err)
	}
	// The first map page and the image pages it lists: entry 0 is the
	// swsusp_info page, entry 1 starts the first compressed block (metadata
	// pages come first in the stream), the last entries hold data pages.
	mapPage := int64(r.Header.Image)
	page := make([]byte, swsusp.PageSize)
	if _, err := f.ReadAt(page, mapPage*swsusp.PageSize); err != nil {
		t.Fatal(err)
	}
	entry := func(i int) int64 { return int64(binary.LittleEndian.Uint64(page[i*8:])) }
	// A byte inside the compressed bytes of block 5 (data pages): walk the
	// blocks by their 8-byte length headers (padding after a block is not
	// covered by anything, in the kernel either).
	dataByte := int64(0)
	hdr := make([]byte, 8)
	for i, block := 1, 0; i < 500; block++ {
		if _, err := f.ReadAt(hdr, entry(i)*swsusp.PageSize); err != nil {
			t.Fatal(err)
		}
		clen := int64(binary.LittleEndian.Uint64(hdr))
		if block == 5 {
			dataByte = entry(i)*swsusp.PageSize + 8 + min(clen/2, 4000)
			break
		}
		i += int((clen + 8 + swsusp.PageSize - 1) / swsusp.PageSize)
	}
	if dataByte == 0 {
		t.Fatal("no block 5 in the first swap_map page")
	}
	f.Close()
	for _, tc := range []struct {
		name string
		off  int64 // byte to flip; -1: truncate instead
		want string
	}{
		// LZO decoding fails in block 5, or it decodes to other bytes and
		// the stream's CRC32 (which cannot say where) no longer matches.
		// 16 bytes are overwritten: one flipped bit in a match distance
		// inside a run of zeros decodes to the same bytes, which nobody
		// can detect (the kernel neither).
		{"data-page", dataByte, "lzo block 5 |crc32 of the uncompressed stream"},
		{"metadata-page", entry(1)*swsusp.PageSize + 100, "metadata page 0 entry"},
		{"map-page", mapPage*swsusp.PageSize + 8*7 + 3, "swap_map page at page"},
		{"truncated", -1, "beyond device end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "swap.img")
			if out, err := exec.Command("cp", "--sparse=always", h.swap, img).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			g, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if tc.off < 0 {
				err = g.Truncate(entry(300) * swsusp.PageSize)
			} else if tc.name == "data-page" {
				_, err = g.WriteAt([]byte("\xa5\x5a\xa5\x5a\xa5\x5a\xa5\x5a\xa5\x5a\xa5\x5a\xa5\x5a\xa5\x5a"), tc.off)
			} else {
				b := make([]byte, 1)
				g.ReadAt(b, tc.off)
				b[0] ^= 0x40
				_, err = g.WriteAt(b, tc.off)
			}
			g.Close()
			if err != nil {
				t.Fatal(err)
			}
			out, err := thaw(t, "inspect", "--json", img)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				t.Fatalf("thaw inspect of a damaged image: %v, want exit status 3", err)
			}
			s := string(out)
			if !strings.Contains(s, `"verdict": "corrupt"`) || !regexp.MustCompile(tc.want).MatchString(s) {
				t.Fatalf("verdict does not name %q:\n%s", tc.want, s)
			}
		})
	}
}
