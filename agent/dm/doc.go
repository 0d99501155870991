// Package dm re-points device-mapper devices at moved disks. It speaks the
// kernel's device-mapper ioctls on /dev/mapper/control directly
// (include/uapi/linux/dm-ioctl.h): list the devices, read a live table,
// load an inactive one, suspend, and resume (which swaps the loaded table
// in and thaws the filesystem above). [Retarget] rewrites the major:minor
// references of a table when a disk came back under another controller;
// [ParseTable] and [FormatTable] read and write the `dmsetup table` text
// that logs and the manifest carry.
//
// There is no dmsetup to call where this runs: the capture process resumes
// on the new machine while every other process is frozen and the root
// filesystem sits on a suspended device. Every [Control] method is
// therefore a raw open, ioctl or close on one file descriptor, with no
// goroutine, timer or channel, and is safe on a locked OS thread whose
// process has its other threads frozen.
package dm
