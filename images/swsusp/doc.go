// Package swsusp reads and writes the Linux kernel's hibernation image as the
// kernel itself writes it to a swap area (kernel/power/swap.c) and as
// /dev/snapshot streams it (kernel/power/snapshot.c), for x86-64 kernels 6.1
// and 6.12.
//
// Two layers, in the manner of archive/tar:
//
//   - The snapshot stream: a header page (swsusp_info with the x86 arch
//     record), metadata pages listing the saved page frame numbers, then one
//     page per saved page frame. Kernels since 6.9 leave all-zero pages out
//     and flag their PFNs instead. [StreamReader] walks a stream as (PFN, page)
//     records in bounded memory.
//   - The swap area: the swap header page with the S1SUSPEND signature
//     (swsusp_header), a chain of swap_map pages listing where each image page
//     lies, and the stream stored uncompressed, LZO- or LZ4-compressed in
//     32-page blocks. [Reader] turns an area back into the stream and checks it
//     ([Reader.Verify]); [Writer] writes a stream into an area in any of the
//     three forms, signature last, so that a resuming kernel reads it.
//
// All offsets inside a swap area are in 4096-byte pages from the start of the
// block device, as the kernel counts them (resume_offset, swap_map entries).
package swsusp
