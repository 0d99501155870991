package blockdev

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"
)

// Dev is a window onto a device or file.
type Dev struct {
	f      *os.File
	Ref    string // as given
	Path   string // the file or device
	Offset int64  // byte offset of the window in Path
	Size   int64  // bytes in the window
	// PartUUID and PartLabel are set for a GPT partition (PATH#N).
	PartUUID  string
	PartLabel string
	Partition int
}

// Open opens ref (PATH or PATH#N) for reading, or for reading and writing.
func Open(ref string, writable bool) (*Dev, error) {
	path, part := ref, 0
	if i := strings.LastIndexByte(ref, '#'); i > 0 {
		n, err := strconv.Atoi(ref[i+1:])
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: partition %q after # is not a number from 1", ref, ref[i+1:])
		}
		path, part = ref[:i], n
	}
	flag := os.O_RDONLY
	if writable {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	size, err := sizeOf(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: size: %w", path, err)
	}
	d := &Dev{f: f, Ref: ref, Path: path, Size: size}
	if part > 0 {
		t, err := gpt.Read(f, 512, 512)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: reading its GPT for partition %d: %w", path, part, err)
		}
		var p *gpt.Partition
		for _, q := range t.Partitions {
			if q.Index == part && q.Start != 0 {
				p = q
			}
		}
		if p == nil {
			f.Close()
			return nil, fmt.Errorf("%s: the GPT has no partition %d", path, part)
		}
		d.Offset = int64(p.Start) * 512
		d.Size = int64(p.End-p.Start+1) * 512
		if d.Offset+d.Size > size {
			f.Close()
			return nil, fmt.Errorf("%s: partition %d (sectors %d-%d) extends past the end of the disk (%d bytes)", path, part, p.Start, p.End, size)
		}
		d.PartUUID = strings.ToLower(p.GUID)
		d.PartLabel = p.Name
		d.Partition = part
	}
	return d, nil
}

func sizeOf(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Mode()&os.ModeDevice != 0 {
		n, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
		if err != nil {
			return 0, err
		}
		return int64(n), nil
	}
	return st.Size(), nil
}

// ReadAt reads from the window.
func (d *Dev) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= d.Size {
		return 0, io.EOF
	}
	short := false
	if int64(len(p)) > d.Size-off {
		p, short = p[:d.Size-off], true
	}
	n, err := d.f.ReadAt(p, d.Offset+off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// WriteAt writes inside the window; a write that would cross its end is
// refused whole.
func (d *Dev) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > d.Size {
		return 0, fmt.Errorf("%s: write of %d bytes at %d outside its %d bytes", d.Ref, len(p), off, d.Size)
	}
	return d.f.WriteAt(p, d.Offset+off)
}

// Sync flushes the device or file.
func (d *Dev) Sync() error { return d.f.Sync() }

// Close closes it.
func (d *Dev) Close() error { return d.f.Close() }

// ResumeArg is the resume= value that names this place to a kernel on
// any machine: PARTUUID= for a GPT partition, else UUID= of the swap area
// it holds (the initramfs resolves it); "" when it has neither (a path on
// the machine that wrote it names nothing elsewhere).
func (d *Dev) ResumeArg() string {
	if d.PartUUID != "" {
		return "PARTUUID=" + d.PartUUID
	}
	page := make([]byte, 4096)
	if _, err := d.ReadAt(page, 0); err != nil {
		return ""
	}
	// The swap header: "SWAPSPACE2" at 4086, the UUID at 1036.
	if sig := string(page[4086:4096]); sig != "SWAPSPACE2" && sig != "SWAP-SPACE" && sig != "S1SUSPEND\x00" {
		return ""
	}
	u := page[1036:1052]
	if isZero(u) {
		return ""
	}
	return fmt.Sprintf("UUID=%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// GPTPart is one entry of a disk's GPT.
type GPTPart struct {
	Number   int
	Start    int64 // bytes
	Size     int64
	PartUUID string // lower case
	Name     string
	Type     string
}

// GPT reads the partition table of a whole disk (a window at offset 0) and
// returns its entries and the disk GUID.
func (d *Dev) GPT() ([]GPTPart, string, error) {
	if d.Offset != 0 {
		return nil, "", fmt.Errorf("%s: a partition has no partition table of its own", d.Ref)
	}
	t, err := gpt.Read(d.f, 512, 512)
	if err != nil {
		return nil, "", fmt.Errorf("%s: GPT: %w", d.Path, err)
	}
	var parts []GPTPart
	for _, p := range t.Partitions {
		if p.Start == 0 {
			continue
		}
		parts = append(parts, GPTPart{Number: p.Index, Start: int64(p.Start) * 512, Size: int64(p.End-p.Start+1) * 512,
			PartUUID: strings.ToLower(p.GUID), Name: p.Name, Type: string(p.Type)})
	}
	return parts, strings.ToLower(t.GUID), nil
}

// Window returns a window of size bytes at off inside d, sharing its file
// (closing either closes both).
func (d *Dev) Window(off, size int64, name string) (*Dev, error) {
	if off < 0 || size <= 0 || off+size > d.Size {
		return nil, fmt.Errorf("%s: window %d+%d outside its %d bytes", d.Ref, off, size, d.Size)
	}
	return &Dev{f: d.f, Ref: name, Path: d.Path, Offset: d.Offset + off, Size: size}, nil
}
