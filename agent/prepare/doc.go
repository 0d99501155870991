// Package prepare makes a running server movable to another disk
// controller when its root, swap or other filesystems sit on plain
// partitions. A resumed kernel keeps the dead controller's disk and hangs
// on any I/O to it; only a device-mapper device can be re-pointed at the
// disk in its new place. thaw prepare therefore puts every such partition
// behind a dm-linear device of its own (thaw-root, thaw-swap0, thaw-boot …)
// from the next boot on, through the server's own initramfs:
//
//   - an initramfs-tools hook copies the thaw binary, dm_mod and the list
//     of partitions (by PARTUUID) into the initramfs;
//   - a local-top script creates the dm-linear devices before the root is
//     mounted, and points ROOT at /dev/mapper/thaw-root;
//   - a udev rule gives the thaw-* devices the filesystem links
//     (/dev/disk/by-uuid, by-label) ahead of the partitions, so that fstab's
//     UUID= and LABEL= entries mount and swap on them.
//
// The boot loader and the kernel command line are never touched. [Undo]
// removes the files and rebuilds the initramfs; [Check] says whether the
// running system is movable now.
package prepare
