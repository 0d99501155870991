// Package capture hibernates the running machine into a thaw bundle through
// /dev/snapshot: it profiles the machine, reserves the mailbox, takes swap
// out of use, freezes user space, creates the image and streams memory and
// then the disks into a signed bundle (a file on a disk that is not
// captured, or an HTTP PUT to thaw serve over a socket opened before the
// freeze), and powers off. When the bundle is later resumed, execution
// continues inside Run, which checks the mailbox, unfreezes and returns.
//
// Swap stays in use: the kernel may swap out to make room for the image,
// and what swap holds travels in the disk streams byte for byte. The
// resume image is therefore never written into a swap area of the image:
// thaw restore writes it to a separate resume area (--resume), or the
// agent restores it directly.
//
// Between the freeze and the power-off everything runs on one locked OS
// thread with raw system calls: no goroutine may park there.
package capture
