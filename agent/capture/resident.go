package capture

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// faultIn brings back every page of this process that lies in swap, and
// every page of its file mappings (the program's own text and data, which
// may sit in a tmpfs that swaps), so that mlockall's lock-on-fault holds
// them all before the freeze. After a move, the swap and the files are on
// a disk whose controller is gone until the device plan is applied: a
// page fault there would never return. It returns the pages touched.
func faultIn(pagemap int) (int, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	type vma struct {
		start, end uint64
		file       bool
	}
	var vmas []vma
	s := bufio.NewScanner(f)
	for s.Scan() {
		fl := strings.Fields(s.Text())
		if len(fl) < 5 || !strings.HasPrefix(fl[1], "r") {
			continue
		}
		lo, hi, ok := strings.Cut(fl[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		path := ""
		if len(fl) >= 6 {
			path = fl[5]
		}
		if strings.HasPrefix(path, "[v") { // [vvar], [vdso], [vsyscall]
			continue
		}
		vmas = append(vmas, vma{start, end, path != "" && !strings.HasPrefix(path, "[")})
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	// Reading a page through /proc/self/mem faults it in as a touch
	// would.
	mem, err := syscall.Open("/proc/self/mem", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer syscall.Close(mem)
	const page = 4096
	buf := make([]byte, 8*512)
	one := make([]byte, 1)
	touched := 0
	for _, v := range vmas {
		for a := v.start; a < v.end; {
			n := min((v.end-a)/page, 512)
			b := buf[:n*8]
			got, err := syscall.Pread(pagemap, b, int64(a/page*8))
			if err != nil || got != len(b) {
				return touched, fmt.Errorf("read /proc/self/pagemap at %#x: %d bytes, %v", a, got, err)
			}
			for i := uint64(0); i < n; i++ {
				e := binary.LittleEndian.Uint64(b[i*8:])
				present, swapped := e&(1<<63) != 0, e&(1<<62) != 0
				if swapped || (v.file && !present) {
					if _, err := syscall.Pread(mem, one, int64(a+i*page)); err == nil {
						touched++
					}
				}
			}
			a += n * page
		}
	}
	return touched, nil
}
