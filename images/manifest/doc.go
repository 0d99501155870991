// Package manifest is the source machine's profile that travels in a thaw
// bundle (versioned JSON): the kernel that owns the memory image, the
// firmware memory map it hashed into the image, the CPU features it saw, the
// PCI devices, NICs and disks with their partition, LVM and device-mapper
// stacks, mounts and swap, and where the resume image lives. `thaw probe`
// produces the same profile for the machine it runs on, so the two can be
// compared.
package manifest
