// Package driverpack reads and writes driver packs: kernel modules built
// for one exact kernel release that the image kernel lacks, with what the
// plan needs to use them (their modalias patterns and dependencies), and a
// minisign signature made with the same keys as bundles.
//
// # Format
//
// A pack is a tar stream (ustar or PAX, as archive/tar writes it) with
// these members, in this order and nothing else:
//
//	pack.json          the Header, JSON, at most MaxHeader bytes
//	pack.json.minisig  a minisign signature over pack.json's bytes
//	modules/NAME.ko    one per Header.Modules entry, in that order:
//	                   an uncompressed ELF relocatable object
//
// The header names the kernel release and the vermagic string the modules
// were built for, how they were built, and for each module its name, size,
// SHA-256, modalias patterns, dependencies (modinfo depends=) and licence.
// The signature's trusted comment is "thaw driver pack RELEASE".
//
// [Read] verifies the signature over the header's bytes before it parses
// them, then checks every module against the header: size, SHA-256, and
// the module's own .modinfo (name and vermagic). Nothing of an unsigned or
// altered pack reaches its caller. [Pack.Check] then compares the pack
// with the image kernel that would load it: the release and the vermagic
// must be equal, byte for byte.
//
// [Writer] buffers the modules it is given (reading each one's .modinfo)
// and writes the pack on Close, signed.
//
// A pack is fetched by the restore agent from thaw.packs=URL as
// URL/RELEASE.pack, and made by `thaw driverpack build`.
package driverpack
