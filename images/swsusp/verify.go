package swsusp

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
)

// Report is what Verify found in a stored image.
type Report struct {
	Header      Header
	Area        SwapArea
	Info        Info
	Compression Compression
	// Release is the image kernel's release, read from its linux_banner in
	// the image's data pages (x86 images carry no utsname in the header).
	Release      string
	Banner       string
	VersionCode  uint32 // derived from Release
	DataPages    uint64 // pages stored with data (image_pages)
	ZeroPages    uint64 // PFNs flagged as all-zero and left out (6.9+)
	MetaPages    uint64
	PFNs         uint64 // saved page frames, zero ones included
	SwapPages    int64  // swap pages the image occupies, swap_map pages included
	MapPages     int
	Blocks       int    // compressed blocks
	CRC32        uint32 // computed over the uncompressed stream
	CRC32Checked bool
	ZeroFlagged  bool // the metadata uses the 6.9+ zero-page flag
}

// debianVersionRE finds the upstream version Debian appends to the banner
// ("#1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2025-10-06)"), not the
// compiler's ("(Debian 12.2.0-14) 12.2.0").
var debianVersionRE = regexp.MustCompile(`#[0-9]* .*Debian ([0-9]+\.[0-9]+\.[0-9]+)-\S+ \([0-9]{4}-`)

var bannerRE = regexp.MustCompile(`Linux version ([0-9]+\.[0-9]+[^ \x00]*) \(([^\x00\n]{0,400})`)

// Verify reads the whole image: every swap_map pointer, every compressed
// block, the CRC32, the metadata and every data page, and returns a report.
// The first inconsistency is returned as an error naming its place.
func (r *Reader) Verify() (*Report, error) {
	rep := &Report{Header: r.Header, Area: r.Area, Compression: r.Header.Compression()}
	st := &streamOut{w: r.walker(), r: r, comp: rep.Compression}
	sr, err := NewStreamReader(st)
	if err != nil {
		return rep, err
	}
	rep.Info = sr.Info
	rep.MetaPages = sr.Info.MetaPages()
	rep.PFNs = uint64(len(sr.PFNs))
	rep.ZeroPages = sr.ZeroPages
	rep.ZeroFlagged = sr.ZeroPages > 0
	marker := []byte("Linux version ")
	for {
		p, err := sr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return rep, err
		}
		if p.Zero {
			continue
		}
		rep.DataPages++
		if rep.Release == "" && bytes.Contains(p.Data, marker) {
			if m := bannerRE.FindSubmatch(p.Data); m != nil {
				rep.Release = string(m[1])
				rep.Banner = string(bytes.TrimRight(m[0], " "))
			}
		}
	}
	// Drain to the end so the CRC check runs.
	if n, err := io.Copy(io.Discard, st); err != nil {
		return rep, err
	} else if n > 0 {
		return rep, fmt.Errorf("swsusp: %d bytes in the stream after the last data page", n)
	}
	rep.CRC32 = st.crc
	rep.CRC32Checked = r.Header.Flags&FlagCRC32 != 0 && rep.Compression != CompressNone
	if st.w.k == mapEntries && st.w.next != 0 {
		// The last map page filled up: the kernel allocated (and wrote) an
		// empty successor.
		if err := st.w.claim("swap_map page", st.w.mapAt, "next", st.w.next); err != nil {
			return rep, err
		}
		st.w.maps++
	}
	rep.SwapPages = st.w.nread + int64(st.w.maps)
	rep.MapPages = st.w.maps
	rep.Blocks = st.blocks
	rep.VersionCode = VersionCode(rep.Release)
	if m := debianVersionRE.FindStringSubmatch(rep.Banner); m != nil && VersionCode(m[1])>>8 == rep.VersionCode>>8 {
		rep.VersionCode = VersionCode(m[1]) // Debian's ABI release hides the sublevel
	}
	return rep, nil
}

// VersionCode computes LINUX_VERSION_CODE from a release string such as
// "6.12.48+deb13-amd64" (0 when it does not parse).
func VersionCode(release string) uint32 {
	var a, b, c uint32
	n, _ := fmt.Sscanf(release, "%d.%d.%d", &a, &b, &c)
	if n < 2 {
		return 0
	}
	return a<<16 | b<<8 | min(c, 255)
}
