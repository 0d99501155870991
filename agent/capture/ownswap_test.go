package capture

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/images/manifest"
)

// lvmServer is the test servers' layout: an LVM PV on vda1 with the root
// and swap LVs, a spare swap partition vda2.
func lvmServer() *manifest.Manifest {
	return &manifest.Manifest{
		Disks: []manifest.Disk{{Name: "vda", Dev: "254:0", Size: 3 << 30, Partitions: []manifest.Partition{
			{Number: 1, Name: "vda1", Start: 1 << 20, Size: 2400 << 20, PartUUID: "990ad13a-fab8-4b67-b847-6102e0d928ee", Dev: "254:1"},
			{Number: 2, Name: "vda2", Start: 2401 << 20, Size: 600 << 20, PartUUID: "b90b780b-23c2-468e-b1ad-3e6dba78504c", Dev: "254:2"},
		}}},
		DM: []manifest.DMDevice{
			{Name: "vg0-root", Dev: "253:0", Table: "0 3145728 linear 254:1 2048"},
			{Name: "vg0-swap", Dev: "253:1", Table: "0 1572864 linear 254:1 3147776"},
			{Name: "vg0-split", Dev: "253:2", Table: "0 2048 linear 254:1 4720640\n2048 2048 linear 254:1 10000"},
			{Name: "crypt", Dev: "253:3", Table: "0 2048 crypt aes-xts-plain64 :64:logon:cryptsetup:x 0 254:1 4096"},
		},
	}
}

func TestOwnSwap(t *testing.T) {
	devs := map[string]string{"/dev/dm-1": "253:1", "/dev/dm-2": "253:2", "/dev/dm-3": "253:3", "/dev/vda2": "254:2", "/dev/sdz1": "8:1"}
	devOf := func(p string) (string, error) {
		if d, ok := devs[p]; ok {
			return d, nil
		}
		return "", errors.New(p + ": no such device")
	}
	for _, tc := range []struct {
		name   string
		swaps  []manifest.Swap
		path   string
		want   *manifest.Resume
		errHas string
	}{
		{name: "the swap LV", swaps: []manifest.Swap{{Path: "/dev/dm-1", Type: "partition", Size: 768 << 20, Used: 76 << 20}}, path: "/dev/dm-1",
			want: &manifest.Resume{Disk: 0, Device: "/dev/mapper/vg0-swap", HeaderOffset: 1<<20 + 3147776*512,
				Segments: []manifest.Segment{{Start: 0, Length: 1572864 * 512, DiskOffset: 1<<20 + 3147776*512}}}},
		{name: "a swap partition", swaps: []manifest.Swap{{Path: "/dev/vda2", Type: "partition", Size: 600 << 20}}, path: "/dev/vda2",
			want: &manifest.Resume{Disk: 0, Partition: 2, PartUUID: "b90b780b-23c2-468e-b1ad-3e6dba78504c", Device: "PARTUUID=b90b780b-23c2-468e-b1ad-3e6dba78504c",
				HeaderOffset: 2401 << 20, Segments: []manifest.Segment{{Start: 0, Length: 600 << 20, DiskOffset: 2401 << 20}}}},
		{name: "the one with most free space", swaps: []manifest.Swap{
			{Path: "/dev/vda2", Type: "partition", Size: 600 << 20, Used: 500 << 20},
			{Path: "/dev/dm-1", Type: "partition", Size: 768 << 20, Used: 76 << 20}}, path: "/dev/dm-1"},
		{name: "a linear table in two segments", swaps: []manifest.Swap{{Path: "/dev/dm-2", Type: "partition", Size: 2 << 20}}, path: "/dev/dm-2",
			want: &manifest.Resume{Disk: 0, Device: "/dev/mapper/vg0-split", HeaderOffset: 1<<20 + 4720640*512, Segments: []manifest.Segment{
				{Start: 0, Length: 2048 * 512, DiskOffset: 1<<20 + 4720640*512}, {Start: 2048 * 512, Length: 2048 * 512, DiskOffset: 1<<20 + 10000*512}}}},
		{name: "dm-crypt", swaps: []manifest.Swap{{Path: "/dev/dm-3", Type: "partition", Size: 1 << 20}}, errHas: "only linear tables"},
		{name: "a swap file", swaps: []manifest.Swap{{Path: "/swapfile", Type: "file", Size: 1 << 20}}, errHas: "swap file"},
		{name: "on no captured disk", swaps: []manifest.Swap{{Path: "/dev/sdz1", Type: "partition", Size: 1 << 20}}, errHas: "neither a partition"},
		{name: "no swap", errHas: "no swap is active"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := lvmServer()
			m.Swaps = tc.swaps
			got, path, err := ownSwap(m, devOf)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err %v, want %q", err, tc.errHas)
				}
				return
			}
			if err != nil || path != tc.path {
				t.Fatalf("%s, %v; want %s", path, err, tc.path)
			}
			if tc.want != nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestExtents(t *testing.T) {
	var e extents
	for _, p := range []uint64{5, 6, 7, 9, 10, 3, 4} {
		e.add(p)
	}
	want := extents{{Start: 5, Count: 3}, {Start: 9, Count: 2}, {Start: 3, Count: 2}}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("%v, want %v", e, want)
	}
}
