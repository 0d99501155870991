package probe

import (
	"path/filepath"

	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/manifest"
)

// DescribeDisk profiles one whole disk, a block device or a disk image,
// from its size and GPT (Table stays empty without one).
func DescribeDisk(path string) (*manifest.Disk, error) {
	dev, err := blockdev.Open(path, false)
	if err != nil {
		return nil, err
	}
	defer dev.Close()
	d := &manifest.Disk{Name: filepath.Base(path), Path: path, Size: dev.Size}
	if parts, guid, err := dev.GPT(); err == nil {
		d.Table, d.DiskGUID = "gpt", guid
		for _, p := range parts {
			d.Partitions = append(d.Partitions, manifest.Partition{Number: p.Number, Start: p.Start, Size: p.Size, PartUUID: p.PartUUID, Label: p.Name, Type: p.Type})
		}
	}
	return d, nil
}
