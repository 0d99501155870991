package restore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// partsBlob reads files PATH.000, PATH.001, … as one: a bundle larger than
// a FAT filesystem's 4 GiB limit, split by thaw media usb.
type partsBlob struct {
	files []*os.File
	ends  []int64 // the end offset of each part
}

// openParts opens PATH.000 and the parts that follow it, or returns nil,
// nil when there is no PATH.000. Every part but the last must be as long
// as the first.
func openParts(path string) (*partsBlob, error) {
	p := &partsBlob{}
	var size, first int64
	for i := 0; i < 1000; i++ {
		name := fmt.Sprintf("%s.%03d", path, i)
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			p.Close()
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			p.Close()
			return nil, err
		}
		if i == 0 {
			first = st.Size()
		}
		if i > 0 && p.ends[i-1]-sizeBefore(p.ends, i-1) != first {
			f.Close()
			p.Close()
			return nil, fmt.Errorf("%s.%03d holds %d bytes, not %d as %s.000: a part is missing or cut", path, i-1, p.ends[i-1]-sizeBefore(p.ends, i-1), first, path)
		}
		size += st.Size()
		p.files = append(p.files, f)
		p.ends = append(p.ends, size)
	}
	if len(p.files) == 0 {
		return nil, nil
	}
	if first == 0 {
		p.Close()
		return nil, fmt.Errorf("%s.000 is empty", path)
	}
	return p, nil
}

func sizeBefore(ends []int64, i int) int64 {
	if i == 0 {
		return 0
	}
	return ends[i-1]
}

func (p *partsBlob) Size() int64 {
	if len(p.ends) == 0 {
		return 0
	}
	return p.ends[len(p.ends)-1]
}

// ReadAt reads across parts.
func (p *partsBlob) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at %d: negative offset", off)
	}
	n := 0
	for len(b) > 0 {
		if off >= p.Size() {
			return n, io.EOF
		}
		i := sort.Search(len(p.ends), func(i int) bool { return p.ends[i] > off })
		start := sizeBefore(p.ends, i)
		want := min(int64(len(b)), p.ends[i]-off)
		m, err := p.files[i].ReadAt(b[:want], off-start)
		n += m
		if err != nil && !(errors.Is(err, io.EOF) && int64(m) == want) {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%s is shorter than it was when opened: %w", p.files[i].Name(), io.ErrUnexpectedEOF)
			}
			return n, err
		}
		b, off = b[m:], off+int64(m)
	}
	return n, nil
}

func (p *partsBlob) Close() error {
	var first error
	for _, f := range p.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	p.files = nil
	return first
}
