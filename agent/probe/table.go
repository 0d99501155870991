package probe

import (
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/thawlinux/thaw/images/manifest"
)

// readTable fills the disk's partition table from the disk itself: for a
// GPT the disk GUID and each partition's PARTUUID, name and type GUID; for
// an MBR the disk signature and the PARTUUIDs the kernel derives from it
// (SSSSSSSS-NN). The sysfs partitions stay as they are, matched by number;
// GPT entries the kernel did not list are added. A table that cannot be read
// leaves Table "".
func readTable(d *manifest.Disk, f *os.File, lbs int) {
	if t, err := gpt.Read(f, lbs, lbs); err == nil {
		d.Table = "gpt"
		d.DiskGUID = strings.ToLower(t.GUID)
		for _, e := range t.Partitions {
			if e.Start == 0 && e.End == 0 {
				continue
			}
			p := partition(d, e.Index)
			if p == nil {
				d.Partitions = append(d.Partitions, manifest.Partition{
					Number: e.Index,
					Start:  int64(e.Start) * int64(lbs),
					Size:   int64(e.End-e.Start+1) * int64(lbs),
				})
				p = &d.Partitions[len(d.Partitions)-1]
			}
			p.PartUUID = strings.ToLower(e.GUID)
			p.Label = e.Name
			p.Type = strings.ToLower(string(e.Type))
		}
		sort.Slice(d.Partitions, func(i, j int) bool { return d.Partitions[i].Number < d.Partitions[j].Number })
		return
	}
	sector := make([]byte, 512)
	if _, err := f.ReadAt(sector, 0); err != nil {
		return
	}
	mbr, ok := parseMBR(sector)
	if !ok {
		return
	}
	d.Table = "mbr"
	d.DiskGUID = fmt.Sprintf("%08x", mbr.signature)
	for i := range d.Partitions {
		p := &d.Partitions[i]
		p.PartUUID = fmt.Sprintf("%08x-%02x", mbr.signature, p.Number)
		if p.Number >= 1 && p.Number <= 4 && mbr.types[p.Number-1] != 0 {
			p.Type = fmt.Sprintf("0x%02x", mbr.types[p.Number-1])
		}
	}
}

// partition is the disk's partition numbered n, or nil.
func partition(d *manifest.Disk, n int) *manifest.Partition {
	for i := range d.Partitions {
		if d.Partitions[i].Number == n {
			return &d.Partitions[i]
		}
	}
	return nil
}

// mbrInfo is what an MBR partition table says of its disk.
type mbrInfo struct {
	signature uint32   // the disk signature at byte 440
	types     [4]uint8 // the primary entries' partition types
}

// parseMBR reads a first sector as a DOS partition table: the 0x55AA
// signature, boot indicators 0x00 or 0x80 in all four entries (as blkid
// checks, to tell a table from a filesystem's boot sector) and no 0xEE
// entry (a GPT's protective MBR).
func parseMBR(sector []byte) (mbrInfo, bool) {
	var m mbrInfo
	if len(sector) < 512 || sector[510] != 0x55 || sector[511] != 0xAA {
		return m, false
	}
	for i := range 4 {
		e := sector[446+16*i : 446+16*(i+1)]
		if e[0] != 0 && e[0] != 0x80 {
			return m, false
		}
		if e[4] == 0xee {
			return m, false
		}
		m.types[i] = e[4]
	}
	m.signature = binary.LittleEndian.Uint32(sector[440:])
	return m, true
}
