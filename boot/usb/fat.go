package usb

import (
	"fmt"

	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// createFAT32 makes a FAT32 filesystem on partition n of d, a few sectors
// smaller than the partition where need be: go-diskfs sizes the FAT
// without the two reserved entries, so for some sizes the FAT is one
// sector short of the clusters (fsck.fat: "has N clusters but only space
// for N-2 FAT entries"). fatSectors finds the largest size at which its
// arithmetic holds.
func createFAT32(d *disk.Disk, n int, label string) (filesystem.FileSystem, error) {
	p, err := d.GetPartition(n)
	if err != nil {
		return nil, err
	}
	size, ok := fatSize(p.GetSize())
	if !ok {
		return nil, fmt.Errorf("no FAT32 layout fits %d bytes", p.GetSize())
	}
	return fat32.Create(d.Backend, size, p.GetStart(), 512, label, false)
}

// go-diskfs's FAT32 layout (filesystem/fat32.Create): 32 reserved
// sectors, two FATs, the cluster size by volume size.
const fatReserved = 32

func fatClusterSectors(size int64) int64 {
	const mb, gb = 1000 * 1000, 1000 * 1000 * 1000
	switch {
	case size <= 260*mb:
		return 1
	case size <= 8*gb:
		return 8
	case size <= 16*gb:
		return 16
	case size <= 32*gb:
		return 32
	}
	return 64
}

// fatLayout is go-diskfs's arithmetic for size bytes: sectors per FAT and
// clusters.
func fatLayout(size int64) (perFAT, clusters int64) {
	spc := fatClusterSectors(size)
	total := size / 512
	perFAT = (4*(total-fatReserved) + 512*spc + 8 - 1) / (512*spc + 8)
	clusters = (total - fatReserved - 2*perFAT) / spc
	return perFAT, clusters
}

// fatSize is the largest size, at most max and at most 64 sectors less,
// whose FAT holds every cluster (and two reserved entries) and whose
// cluster count makes it FAT32 (65525 or more).
func fatSize(max int64) (int64, bool) {
	for s := max / 512 * 512; s > max-64*512 && s > 0; s -= 512 {
		perFAT, clusters := fatLayout(s)
		if perFAT*128 >= clusters+2 && clusters >= 65525 && perFAT <= 0xffff {
			return s, true
		}
	}
	return 0, false
}
