// Package usb writes the thaw recovery stick: a GPT disk image (or a
// device) that boots the restore agent and carries bundles for a restore
// without any network.
//
// Layout:
//
//	partition 1  THAW-ESP   EFI system partition, FAT32
//	             EFI/BOOT/BOOTX64.EFI     systemd-boot (Debian's systemd-boot-efi)
//	             loader/loader.conf, loader/entries/*.conf
//	             syslinux/                syslinux for BIOS machines (optional:
//	                                      gptmbr.bin in the protective MBR, the
//	                                      partition marked legacy-BIOS-bootable)
//	             thaw/vmlinuz, thaw/initramfs.gz   the agent
//	partition 2  THAWDATA   FAT32 with the same label, to the end of the disk
//	             NAME.thaw (or NAME.thaw.000, .001, … over 4 GiB)
//	             thaw-logs/               the only folder the agent writes
//	             README.txt
//
// The boot menu is Config.Entries (thaw media usb makes, per bundle, a
// "plan" entry that writes nothing and a "restore" entry, and a
// rescue-shell entry). The default, after the timeout, is Config.Default,
// or the first entry.
//
// go-diskfs writes the GPT and both FAT32 filesystems; fixFAT32 then
// mends what its FAT32 writer leaves for dosfstools' fsck.fat to fix (the
// ".." entries of directories in the root, the free-cluster count, the
// backup boot sector), so that fsck.fat -n passes.
package usb
