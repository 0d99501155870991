// Package coldplug loads the drivers for the devices present at boot: each
// device's modalias (PCI, virtio, …) is matched against the running
// kernel's modules.alias, the same matcher the plan uses for the image
// kernel, and the matching modules are loaded with their dependencies. It
// repeats until no new device appears (a virtio PCI driver brings virtio
// devices that want their own drivers).
package coldplug
