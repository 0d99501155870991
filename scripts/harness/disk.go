package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/swsusp"
)

// Part is one partition of a GPT disk made by MakeGPTDisk.
type Part struct {
	Name   string
	SizeMB int
	Swap   bool   // format it as a swap area (as mkswap would)
	LVM    bool   // typed as an LVM physical volume
	GUID   string // the partition's PARTUUID; random when empty
	// SwapUUID is the swap area's own UUID (fstab's UUID=); random when
	// empty.
	SwapUUID string
}

// MakeGPTDisk creates a sparse disk image of sizeMB MiB at path with a GPT
// (go-diskfs) holding parts in order, each aligned to 1 MiB.
func MakeGPTDisk(path string, sizeMB int, parts []Part) error {
	os.Remove(path)
	d, err := diskfs.Create(path, int64(sizeMB)<<20, diskfs.SectorSize512)
	if err != nil {
		return fmt.Errorf("harness: create %s: %w", path, err)
	}
	t := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true}
	start := uint64(2048)
	for i, p := range parts {
		n := uint64(p.SizeMB) << 20 / 512
		typ := gpt.LinuxFilesystem
		if p.Swap {
			typ = gpt.LinuxSwap
		}
		if p.LVM {
			typ = gpt.LinuxLVM
		}
		t.Partitions = append(t.Partitions, &gpt.Partition{Index: i + 1, Start: start, End: start + n - 1, Type: typ, Name: p.Name, GUID: p.GUID})
		start += n
	}
	if err := d.Partition(t); err != nil {
		return fmt.Errorf("harness: partition %s: %w", path, err)
	}
	d.Close()
	for i, p := range parts {
		if !p.Swap {
			continue
		}
		dev, err := blockdev.Open(fmt.Sprintf("%s#%d", path, i+1), true)
		if err != nil {
			return err
		}
		var uuid [16]byte
		rand.Read(uuid[:])
		uuid[6] = uuid[6]&0x0f | 0x40
		uuid[8] = uuid[8]&0x3f | 0x80
		if p.SwapUUID != "" {
			h, err := hex.DecodeString(strings.ReplaceAll(p.SwapUUID, "-", ""))
			if err != nil || len(h) != 16 {
				dev.Close()
				return fmt.Errorf("harness: partition %d: bad swap UUID %q", i+1, p.SwapUUID)
			}
			copy(uuid[:], h)
		}
		err = swsusp.FormatSwap(dev, 0, uint32(dev.Size/swsusp.PageSize), uuid, p.Name)
		dev.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
