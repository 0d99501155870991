// Package nicmove makes a NIC of this machine take over the network
// identity of a NIC of the source: its interface name, MAC, addresses and
// routes.
//
// It runs in the capture process right after resume, while every other
// process is still frozen, so that the server's own network configuration
// (matching by name, static or DHCP) finds its interface when it thaws.
// The source's device is gone but its netdev lingers; it is brought down,
// stripped of its addresses and renamed out of the way (old0, old1, …),
// never removed: removing a stale virtio-net PCI device oopses the kernel.
// A stale virtio-net cannot even be brought down (its close oopses after
// the failed restore): it stays up and detached, loses its addresses and
// is renamed while up (Linux 6.2 and later); an older kernel refuses that,
// and then the stale link keeps the name (Move.StaleOpen).
//
// Every system call is synchronous and made on the calling thread: no
// goroutines, channels or timers, since the kernel has frozen the
// process's other threads. Waiting is a polling loop over nanosleep(2).
package nicmove
