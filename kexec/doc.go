// Package kexec has one job: load a kernel for kexec with boot_params it
// rebuilt, so that the next kernel sees the memory map thaw hands it.
//
// A hibernated x86 image stores a digest of its firmware e820 table and the
// restoring kernel refuses any other ("Hibernate inconsistent memory map
// detected!"); the table changes with the RAM size and even with the disk
// controllers. [LoadWithE820] therefore loads a kernel with kexec_load(2)
// and boot_params taken from the running kernel
// (/sys/kernel/boot_params/data) with the source's e820 table in place of
// the target's, the setup_data chain cleared and the ext_* fields zeroed.
// Every segment goes where both maps say RAM, and a source whose RAM the
// target does not have is refused ([CheckFits], [FitError]) by the fit rule
// of images/memmap, the one thaw plan applies too.
//
// It composes u-root's exported building blocks (pkg/boot/bzimage,
// pkg/boot/kexec and the purgatory of pkg/boot/purgatory) as
// pkg/boot/linux.KexecLoad does, with the table substituted. When the maps
// already agree, [FileLoad] uses kexec_file_load(2) and the kernel builds
// everything itself. [Exec] reboots into whichever kernel was loaded.
//
// kexec_load needs the kernel decompressed in the loading process. The
// zstd (Debian 13), xz (Debian 12) and gzip payloads are decoded straight
// into one buffer of the announced size (u-root's decoder, kept for the
// other compressions, peaked at 265 MiB RSS for Debian 13's 12 MiB kernel:
// a 128 MiB zstd window and doubling buffers); the loadable segments are
// copied out and the rest given back to the system before the initrd is
// read. A test process loading Debian 13's kernel peaks at 124 MiB RSS,
// Debian 12's at 167 MiB (the xz dictionary); what stays is the segments
// (about 50 MiB) plus the initrd, which kexec_load copies once more into
// kernel memory.
package kexec
