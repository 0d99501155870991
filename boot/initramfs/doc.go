// Package initramfs builds a newc cpio archive, the format of a Linux
// initramfs, in memory: directories (with their parents), regular files,
// symbolic links and copies of host files, then the archive gzip-compressed
// ([Archive.Bytes]) or raw for tools that merge archives ([Archive.Raw]).
//
// boot/mkinitramfs writes the agent's base archive with it; the test
// harness builds its busybox guests on it.
package initramfs
