// Package physmem reads and writes ranges of physical memory through an
// mmap of /dev/mem, and picks the ranges of a firmware memory map that carry
// the firmware's ACPI tables.
//
// A hibernated server's ACPI tables are not in its memory image: they lie in
// the non-RAM ranges of its firmware map (type 2 under SeaBIOS, 3 and 4 on
// real firmware). When the image resumes on other hardware with the source's
// e820 table replayed (package kexec), those addresses hold whatever the
// target put there, and AML breaks ("The DSDT has been corrupted or
// replaced"). Capture reads the [Ranges] with [Read] into the bundle; the
// restore writes them back at the same addresses with [Write] before it
// hands control to the image.
//
// mmap is used because read(2) and write(2) on /dev/mem stop at high_memory,
// the end of the directly mapped RAM; mmap does not. Debian's kernels set
// STRICT_DEVMEM and IO_STRICT_DEVMEM: writing a range typed Reserved (2) was
// allowed in the experiments; ranges the kernel has claimed (ACPI Tables,
// ACPI Non-volatile Storage on real firmware) likely need iomem=relaxed on
// the writer's command line.
package physmem
