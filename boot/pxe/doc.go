// Package pxe writes the network boot files for the restore agent.
//
// Script is an iPXE script that fetches the agent kernel and initramfs
// over HTTP and boots them with the thaw.* parameters. Write lays out a
// whole tree (thaw media pxe): the script, the agent, Debian's iPXE
// loaders for BIOS and UEFI, and a dnsmasq.conf for proxy-DHCP, which
// sits beside a network's own DHCP server, hands out no addresses, gives
// PXE ROMs the loader for their architecture over TFTP and gives iPXE the
// script's URL. thaw serve --boot serves the tree over HTTP.
package pxe
