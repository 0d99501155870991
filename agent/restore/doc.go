// Package restore is the restore as one pipeline: the stages that take one
// bundle from its store onto this machine's disks and into the image's
// memory, in order —
//
//	params     the agent's instructions (kernel command line)
//	drivers    the agent kernel's modules for the devices present
//	dhcp       the network
//	open       the bundle, over HTTP(S) range requests or from a file
//	signature  its signed index, the pin, the identity that decrypts it
//	probe      this machine
//	plan       the bundle against this machine; every refusal comes here,
//	           before the first write
//	write      each chunk fetched once, checked against the signed index
//	           and written (or every chunk checked first, when a target
//	           disk holds data)
//	area       the resume image in the kernel's format, signature last
//	handover   direct (/dev/snapshot), kexec into the image kernel, or
//	           stage 2 (the agent again, with the source's memory map)
//
// Stage 2 runs image, signature, stage2 (the first stage's state),
// firmware (the source's ranges back into memory), arm (the resume
// image's signature, which stage 1 wrote, verified and held back) and
// handover.
//
// thaw agent runs them all; thaw restore skips drivers and dhcp (and
// probe, unless it hands over directly); thaw plan stops after plan. The
// stages run over one State, and every system call goes through the small
// interfaces of Env, so the whole pipeline runs in unit tests with fakes.
//
// A refusal is a *plan.Refused: the console box, --json and thaw.log= all
// render the same value.
package restore
