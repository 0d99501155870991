// Package takeover applies the device plan inside the resumed server: the
// capture process, which wakes up first while every other process is
// still frozen, loads the drivers the agent put into its mailbox, checks
// that the plan's claim keeps the rescan's BARs out of this machine's
// extra RAM, rescans the PCI bus (the dead controllers stay, quiesced, and
// are never read), finds each moved disk by its GPT GUID, re-points the
// device-mapper tables above it to the disk's new major:minor and resumes
// them, and gives the new NICs the source's names, MACs, addresses and
// routes.
// Only then does the caller unfreeze the server.
//
// Every system call goes through the System interface: raw, synchronous
// calls only, because the process's other threads stay frozen until the
// end.
package takeover
