package dm

import "strconv"

// Device numbers are Linux dev_t values as glibc's makedev and
// golang.org/x/sys/unix.Mkdev encode them on Linux. For the numbers a
// kernel hands out (major below 1<<12, minor below 1<<20) this is also the
// kernel's huge_encode_dev, the encoding of every dev field in the ioctls.

const (
	maxMajor = 1<<12 - 1 // MINORBITS 20 in a 32-bit kernel dev_t
	maxMinor = 1<<20 - 1
)

func mkdev(major, minor uint32) uint64 {
	return uint64(major&0xfffff000)<<32 | uint64(major&0xfff)<<8 |
		uint64(minor&0xffffff00)<<12 | uint64(minor&0xff)
}

func devMajor(dev uint64) uint32 {
	return uint32((dev>>32)&0xfffff000 | (dev>>8)&0xfff)
}

func devMinor(dev uint64) uint32 {
	return uint32((dev>>12)&0xffffff00 | dev&0xff)
}

// ParseDev reads a "major:minor" device reference, both decimal, as the
// kernel's dm_get_device accepts it; ok is false for anything else,
// numbers out of the kernel's range included.
func ParseDev(s string) (dev uint64, ok bool) {
	i := 0
	for i < len(s) && s[i] != ':' {
		i++
	}
	if i == len(s) {
		return 0, false
	}
	ma, ok1 := decimal(s[:i], maxMajor)
	mi, ok2 := decimal(s[i+1:], maxMinor)
	if !ok1 || !ok2 {
		return 0, false
	}
	return mkdev(ma, mi), true
}

// decimal parses a non-empty run of ASCII digits no larger than max.
func decimal(s string, max uint32) (uint32, bool) {
	if s == "" {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
		if v > uint64(max) {
			return 0, false
		}
	}
	return uint32(v), true
}

// FormatDev writes dev as "major:minor", the form tables use.
func FormatDev(dev uint64) string {
	return strconv.FormatUint(uint64(devMajor(dev)), 10) + ":" + strconv.FormatUint(uint64(devMinor(dev)), 10)
}
