package usb

import (
	"encoding/binary"
	"fmt"
	"os"
)

// fixFAT32 finishes a FAT32 filesystem that go-diskfs (and, for BIOS
// boot, the syslinux installer) wrote at byte start of f, so that
// dosfstools' fsck.fat finds nothing to fix:
//   - the ".." entry of a directory in the root names cluster 0 (go-diskfs
//     writes the root's cluster, which fsck.fat calls invalid);
//   - the FS information sector gets the free cluster count and the next
//     free cluster (go-diskfs leaves them "unknown");
//   - the backup boot sectors (6-8) match sectors 0-2 again after the
//     syslinux installer wrote its boot code into sector 0.
func fixFAT32(f *os.File, start int64) error {
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, start); err != nil {
		return fmt.Errorf("FAT32 boot sector at %d: %w", start, err)
	}
	le := binary.LittleEndian
	bps := int64(le.Uint16(bs[11:]))
	spc := int64(bs[13])
	reserved := int64(le.Uint16(bs[14:]))
	nfats := int64(bs[16])
	total := int64(le.Uint32(bs[32:]))
	perFAT := int64(le.Uint32(bs[36:]))
	root := le.Uint32(bs[44:])
	fsinfo := int64(le.Uint16(bs[48:]))
	backup := int64(le.Uint16(bs[50:]))
	if bps != 512 || spc == 0 || nfats == 0 || perFAT == 0 || le.Uint16(bs[510:]) != 0xaa55 {
		return fmt.Errorf("FAT32 boot sector at %d: not the layout written (bytes/sector %d, sectors/cluster %d)", start, bps, spc)
	}
	clusters := (total - reserved - nfats*perFAT) / spc
	fat := make([]byte, perFAT*bps)
	if _, err := f.ReadAt(fat, start+reserved*bps); err != nil {
		return fmt.Errorf("FAT at %d: %w", start+reserved*bps, err)
	}
	next := func(c uint32) uint32 { return le.Uint32(fat[4*int64(c):]) & 0x0fffffff }
	dataStart := start + (reserved+nfats*perFAT)*bps
	clusterAt := func(c uint32) int64 { return dataStart + int64(c-2)*spc*bps }
	csize := spc * bps

	// The root directory's chain; in it, every directory's "..".
	buf := make([]byte, csize)
	for c, n := root, 0; c >= 2 && c < 0x0ffffff8; c, n = next(c), n+1 {
		if n > int(clusters) {
			return fmt.Errorf("FAT32 at %d: the root directory's cluster chain loops", start)
		}
		if _, err := f.ReadAt(buf, clusterAt(c)); err != nil {
			return err
		}
		for i := int64(0); i+32 <= csize; i += 32 {
			e := buf[i : i+32]
			if e[0] == 0 {
				break
			}
			if e[0] == 0xe5 || e[11] == 0x0f || e[11]&0x10 == 0 || e[0] == '.' {
				continue
			}
			first := uint32(le.Uint16(e[20:]))<<16 | uint32(le.Uint16(e[26:]))
			if first < 2 || int64(first) >= clusters+2 {
				return fmt.Errorf("FAT32 at %d: directory %q starts at cluster %d, outside the filesystem", start, e[:11], first)
			}
			dot := make([]byte, 64)
			at := clusterAt(first)
			if _, err := f.ReadAt(dot, at); err != nil {
				return err
			}
			if string(dot[32:43]) != "..         " {
				return fmt.Errorf("FAT32 at %d: directory %q has no \"..\" entry", start, e[:11])
			}
			if uint32(le.Uint16(dot[52:]))<<16|uint32(le.Uint16(dot[58:])) == root {
				var zero [2]byte
				if _, err := f.WriteAt(zero[:], at+32+20); err != nil {
					return err
				}
				if _, err := f.WriteAt(zero[:], at+32+26); err != nil {
					return err
				}
			}
		}
	}

	// The free cluster count and the first free cluster.
	free, firstFree := uint32(0), uint32(0xffffffff)
	for c := uint32(2); int64(c) < clusters+2; c++ {
		if next(c) == 0 {
			free++
			if firstFree == 0xffffffff {
				firstFree = c
			}
		}
	}
	info := make([]byte, 512)
	if _, err := f.ReadAt(info, start+fsinfo*bps); err != nil {
		return err
	}
	if le.Uint32(info[0:]) != 0x41615252 || le.Uint32(info[484:]) != 0x61417272 {
		return fmt.Errorf("FAT32 at %d: no FS information sector at sector %d", start, fsinfo)
	}
	le.PutUint32(info[488:], free)
	le.PutUint32(info[492:], firstFree)
	if _, err := f.WriteAt(info, start+fsinfo*bps); err != nil {
		return err
	}

	// Sectors 0-2 again as the backup.
	if backup > 0 && backup+3 <= reserved {
		three := make([]byte, 3*bps)
		if _, err := f.ReadAt(three, start); err != nil {
			return err
		}
		if _, err := f.WriteAt(three, start+backup*bps); err != nil {
			return err
		}
	}
	return nil
}
