// Package console renders the agent's progress for the people at the
// machine: a list of stages (link, DHCP lease, image, signature, probe,
// plan, write with a progress bar and rate, restore or kexec), each with
// its state, detail and time, and on a refusal a box that states the
// reason and the fix. It writes plain lines (a serial console keeps them
// all) to every output it is given, and hands each line to an optional
// sink (the remote log).
package console
