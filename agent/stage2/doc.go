// Package stage2 carries the agent across a kexec into itself. When the
// target's memory map differs from the source's, the first stage writes
// the disks, then boots the agent kernel again with the source's e820
// table (kexec/); the second stage, now on the source's memory map, writes
// the firmware ranges back and restores. Pack turns the running initramfs
// root into the second stage's initramfs, and State is what the first
// stage tells the second (a file inside that archive).
package stage2
