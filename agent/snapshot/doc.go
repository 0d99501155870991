// Package snapshot drives the kernel's userspace hibernation interface,
// /dev/snapshot (kernel/power/user.c): freeze user space, create the image,
// read it out (capture) or write one in and jump into it (direct restore).
//
// The caller must run on one locked OS thread with GOMAXPROCS(1) and the
// garbage collector off: SNAPSHOT_FREEZE freezes the process's other threads
// too, and after it nothing may park a goroutine. Every method is a raw
// system call for that reason, and Thaw undoes a freeze on any error path,
// so that a failure never leaves a frozen machine.
package snapshot
