// Package pxe writes the network boot files for the restore agent: an
// iPXE script that fetches the agent kernel and initramfs over HTTP and
// boots them with the thaw.* parameters. Serve it by TFTP (a DHCP server's
// bootfile, or QEMU's -netdev user,tftp=DIR,bootfile=boot.ipxe) to
// machines whose NIC firmware is iPXE, or chain-load it from another PXE
// loader.
package pxe
