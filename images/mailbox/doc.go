// Package mailbox carries a payload from the restore agent to the resumed
// capture process through the capture process's own memory: the mailbox
// pages that `thaw capture` reserves before the freeze, found again in the
// hibernation snapshot stream by their page frame numbers.
//
// # Marker pages
//
// Before the freeze every mailbox page i is filled by [Mark]: byte j holds
// 0xa5 ^ i ^ j (low eight bits), then the page starts with
//
//	offset  size  field
//	     0     8  "THAWMBOX" (MarkerMagic)
//	     8    16  the capture's nonce
//	    24     4  i, little-endian uint32
//
// [IsMarker] recognises such a page by magic, nonce and index.
//
// # Payload
//
// The restore agent replaces the mailbox's data pages in the stream, from
// page 0 on, with a payload (the last page zero-padded). All integers are
// little-endian. The header is 72 bytes:
//
//	offset  size  field
//	     0     8  "THAWPAYL" (PayloadMagic)
//	     8     2  version, 1
//	    10     2  flags, 0 (no flag is defined in version 1)
//	    12     4  entry count, at most MaxEntries
//	    16     8  total length in bytes, header included; at most MaxSize
//	    24    16  the capture's nonce, as recorded in the bundle manifest
//	    40    32  SHA-256 digest
//	    72        first entry
//
// The digest is SHA-256 over the total length of the payload with the digest
// field (bytes 40 to 71) set to zero. Entries follow one another with no
// padding:
//
//	offset  size  field
//	     0     1  kind: 1 plan, 2 module; 0 is invalid, others are reserved
//	     1     2  name length n, 1 to 255
//	     3     n  name: UTF-8, no '/' or NUL, not "." or ".."
//	   3+n     4  data length d
//	   7+n     d  data
//
// The last entry ends exactly at the total length. A plan (kind 1) is the
// device plan as JSON; there is at most one. A module (kind 2) is a kernel
// module as an uncompressed ELF object (.ko), loaded in the order the
// entries appear. Names are unique within a kind. A reader keeps entries of
// kinds it does not know and leaves them to its caller.
//
// [Writer] builds a payload, [Parse] checks and decodes one, refusing a
// payload made for another capture ([ErrNonce]) or altered on the way
// ([ErrDigest]).
//
// # Snapshot stream
//
// [Injector] copies a snapshot stream (the swsusp_info page, the metadata
// pages listing the saved PFNs, the data pages, as /dev/snapshot produces
// it) and puts the payload in place of the mailbox's data pages, checking
// first that each page it replaces is the marker page it expects. It holds
// one page at a time. [Extract] reads the mailbox region back out of a
// stream.
package mailbox
