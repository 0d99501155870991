// Package plan decides whether a bundle's server can live on this machine:
// it compares the source's manifest with the target's profile (agent/probe)
// and returns a Plan value — ok, or refusals each with a reason and a hint —
// with the CPU features missing, the memory-map fit, the disk mapping, the
// driver table (each target PCI device → the image kernel's module, matched
// against its modules.alias) and which resume path applies. Making a plan
// writes nothing.
package plan
