package capture

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/thawlinux/thaw/agent/dm"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/swsusp"
)

// ownSwap chooses the swap in use that will receive the image at restore
// time: of the active swaps on captured disks (a partition, or a
// device-mapper device of linear targets on one captured disk), the one
// with most free space. It returns where that swap lies on its disk and
// how the image kernel names it; devOf gives a path's major:minor. The
// slots are reserved later, once the image exists (reserveSlots).
func ownSwap(m *manifest.Manifest, devOf func(path string) (string, error)) (*manifest.Resume, string, error) {
	var best *manifest.Resume
	var bestPath string
	var bestFree int64
	var why []string
	for _, s := range m.Swaps {
		if s.Type != "partition" {
			why = append(why, fmt.Sprintf("%s is a swap file", s.Path))
			continue
		}
		dev, err := devOf(s.Path)
		if err != nil {
			why = append(why, err.Error())
			continue
		}
		r, err := placeSwap(m, dev)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", s.Path, err))
			continue
		}
		if free := s.Size - s.Used; best == nil || free > bestFree {
			best, bestPath, bestFree = r, s.Path, free
		}
	}
	if best == nil {
		if len(why) == 0 {
			why = append(why, "no swap is active")
		}
		return nil, "", errors.New(strings.Join(why, "; "))
	}
	return best, bestPath, nil
}

// placeSwap finds the swap device dev ("major:minor") on the captured
// disks.
func placeSwap(m *manifest.Manifest, dev string) (*manifest.Resume, error) {
	if di, p := partitionByDev(m, dev); p != nil {
		if p.PartUUID == "" {
			return nil, fmt.Errorf("partition %s has no PARTUUID to name it by", p.Name)
		}
		return &manifest.Resume{Disk: di, Partition: p.Number, PartUUID: p.PartUUID, HeaderOffset: p.Start, Device: "PARTUUID=" + p.PartUUID,
			Segments: []manifest.Segment{{Start: 0, Length: p.Size, DiskOffset: p.Start}}}, nil
	}
	for _, d := range m.DM {
		if d.Dev != dev {
			continue
		}
		table, err := dm.ParseTable(d.Table)
		if err != nil {
			return nil, fmt.Errorf("device-mapper %s: %w", d.Name, err)
		}
		r := &manifest.Resume{Disk: -1, Device: "/dev/mapper/" + d.Name}
		var at int64
		for _, t := range table {
			f := strings.Fields(t.Params)
			if t.Type != "linear" || len(f) != 2 {
				return nil, fmt.Errorf("device-mapper %s: a %s target: only linear tables are placed on a disk", d.Name, t.Type)
			}
			off, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || int64(t.Start)*512 != at {
				return nil, fmt.Errorf("device-mapper %s: table %q", d.Name, d.Table)
			}
			var base int64
			di, p := partitionByDev(m, f[0])
			switch {
			case p != nil:
				base = p.Start
			default:
				if di = diskByDev(m, f[0]); di < 0 {
					return nil, fmt.Errorf("device-mapper %s: %s is on no captured disk", d.Name, f[0])
				}
			}
			if r.Disk >= 0 && r.Disk != di {
				return nil, fmt.Errorf("device-mapper %s spans two disks", d.Name)
			}
			r.Disk = di
			seg := manifest.Segment{Start: at, Length: int64(t.Length) * 512, DiskOffset: base + off*512}
			r.Segments = append(r.Segments, seg)
			at += seg.Length
		}
		if len(r.Segments) == 0 {
			return nil, fmt.Errorf("device-mapper %s has an empty table", d.Name)
		}
		r.HeaderOffset = r.Segments[0].DiskOffset
		return r, nil
	}
	return nil, fmt.Errorf("%s is neither a partition of a captured disk nor a device-mapper device", dev)
}

func partitionByDev(m *manifest.Manifest, dev string) (int, *manifest.Partition) {
	for i := range m.Disks {
		for j := range m.Disks[i].Partitions {
			if p := &m.Disks[i].Partitions[j]; p.Dev == dev {
				return i, p
			}
		}
	}
	return -1, nil
}

func diskByDev(m *manifest.Manifest, dev string) int {
	for i, d := range m.Disks {
		if d.Dev == dev {
			return i
		}
	}
	return -1
}

// extents collects page numbers, in the order given, into runs.
type extents []manifest.Extent

func (e *extents) add(page uint64) {
	if n := len(*e); n > 0 && (*e)[n-1].Start+(*e)[n-1].Count == page {
		(*e)[n-1].Count++
		return
	}
	*e = append(*e, manifest.Extent{Start: page, Count: 1})
}

// slotsNeeded is how many swap pages an image of imageBytes needs in the
// kernel's format (LZO, worst case, swap_map pages included).
func slotsNeeded(imageBytes int64) int64 {
	return swsusp.NeedPages(uint64(imageBytes/swsusp.PageSize), swsusp.CompressLZO)
}
