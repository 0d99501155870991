package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/thawlinux/thaw/images/manifest"
)

// readOptional reads a file under the root; a missing file is (nil, nil).
func (p *prober) readOptional(rel string) (string, []byte, error) {
	path := p.path(rel)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return path, nil, nil
	}
	return path, b, err
}

// Route flags of /proc/net/route (include/uapi/linux/route.h).
const (
	rtfUp      = 0x1
	rtfGateway = 0x2
)

// routes reads the IPv4 routes of /proc/net/route by interface, as
// "10.0.2.0/24", "default via 10.0.2.2" or "203.0.113.5/32 via 192.168.7.1".
func (p *prober) routes() (map[string][]string, error) {
	path, b, err := p.readOptional("proc/net/route")
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	err = lines(path, b, func(n int, line string) error {
		f := strings.Fields(line)
		if n == 1 || len(f) == 0 {
			return nil // the header
		}
		if len(f) < 8 {
			return fmt.Errorf("%d fields, want 11", len(f))
		}
		var v [4]uint32 // destination, gateway, flags, mask
		for i, col := range []int{1, 2, 3, 7} {
			x, err := strconv.ParseUint(f[col], 16, 32)
			if err != nil {
				return err
			}
			v[i] = uint32(x)
		}
		if v[2]&rtfUp == 0 {
			return nil
		}
		ones, bits := net.IPMask(ipv4(v[3])).Size()
		if bits == 0 {
			return fmt.Errorf("mask %s is not a prefix", f[7])
		}
		r := fmt.Sprintf("%s/%d", ipv4(v[0]), ones)
		if ones == 0 && v[0] == 0 {
			r = "default"
		}
		if v[2]&rtfGateway != 0 {
			r += " via " + ipv4(v[1]).String()
		}
		out[f[0]] = append(out[f[0]], r)
		return nil
	})
	return out, err
}

// ipv4 turns an address /proc/net/route prints as a host-order number back
// into its network-order bytes.
func ipv4(v uint32) net.IP {
	ip := make(net.IP, 4)
	binary.NativeEndian.PutUint32(ip, v)
	return ip
}

// unescape undoes the octal escapes (\040 for a space) /proc writes in
// paths.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// mounts reads the mounts of block filesystems from /proc/self/mountinfo:
// those on a device with a major number, and those whose source is a /dev
// path (btrfs reports an anonymous 0:N device for its subvolumes).
func (p *prober) mounts(m *manifest.Manifest) error {
	path, b, err := p.readOptional("proc/self/mountinfo")
	if err != nil {
		return err
	}
	return lines(path, b, func(_ int, line string) error {
		f := strings.Fields(line)
		if len(f) == 0 {
			return nil
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 7 || sep < 0 || sep+2 >= len(f) {
			return fmt.Errorf("%d fields and no \" - \" separator: not mountinfo", len(f))
		}
		major, _, ok := strings.Cut(f[2], ":")
		if !ok {
			return fmt.Errorf("device %q is not major:minor", f[2])
		}
		src := unescape(f[sep+2])
		if major == "0" && !strings.HasPrefix(src, "/dev/") {
			return nil
		}
		m.Mounts = append(m.Mounts, manifest.Mount{Target: unescape(f[4]), Source: src, FSType: f[sep+1], Dev: f[2]})
		return nil
	})
}

// swaps reads /proc/swaps (sizes there in KiB).
func (p *prober) swaps(m *manifest.Manifest) error {
	path, b, err := p.readOptional("proc/swaps")
	if err != nil {
		return err
	}
	return lines(path, b, func(n int, line string) error {
		f := strings.Fields(line)
		if n == 1 || len(f) == 0 {
			return nil // the header
		}
		if len(f) != 5 {
			return fmt.Errorf("%d fields, want 5", len(f))
		}
		s := manifest.Swap{Path: unescape(f[0]), Type: f[1]}
		var v [2]int64
		for i, x := range f[2:4] {
			k, err := strconv.ParseInt(x, 10, 64)
			if err != nil || k < 0 || k > 1<<53 {
				return fmt.Errorf("size %q is not a KiB count", x)
			}
			v[i] = k * 1024
		}
		s.Size, s.Used = v[0], v[1]
		prio, err := strconv.Atoi(f[4])
		if err != nil {
			return fmt.Errorf("priority: %w", err)
		}
		s.Priority = prio
		m.Swaps = append(m.Swaps, s)
		return nil
	})
}
