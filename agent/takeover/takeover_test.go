package takeover

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thawlinux/thaw/agent/dm"
	"github.com/thawlinux/thaw/agent/nicmove"
	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/manifest"
)

// The E6 move: the source's virtio disk vda (LVM on vda1) and virtio-net
// NIC enp0s2 come back on a pvscsi controller as sda and on a vmxnet3 NIC.
const (
	guid     = "6F1B4C2E-9A3D-4E5F-8B7A-0C1D2E3F4A5B"
	oldDisk  = "0000:00:03.0"
	newDisk  = "0000:00:06.0"
	oldNIC   = "0000:00:02.0"
	newNIC   = "0000:00:0a.0"
	srcMAC   = "52:54:00:12:34:56"
	newMAC   = "00:0c:29:aa:bb:cc"
	rootOld  = "0 4194304 linear 254:1 2048"
	rootNew  = "0 4194304 linear 8:1 2048"
	swapOld  = "0 1048576 linear 254:1 4196352"
	swapNew  = "0 1048576 linear 8:1 4196352"
	dataTbl  = "0 204800 linear 254:17 2048"
	findStep = "find disk vda (GUID " + guid + ") at " + newDisk
	nicStep  = "NIC enp0s2 → " + newNIC + " (vmxnet3) with " + srcMAC
)

var e6Modules = []string{"scsi_mod", "vmw_pvscsi", "sd_mod", "vmxnet3"}

// source is the capture's manifest: vda with two partitions, a second
// disk vdb that stays, vg0-root (suspended by the capture) and vg0-swap on
// vda1, and data on vdb1.
func source() *manifest.Manifest {
	return &manifest.Manifest{
		Version: manifest.Version,
		Kind:    "capture",
		Disks: []manifest.Disk{{
			Name: "vda", Dev: "254:0", PCI: oldDisk, Driver: "virtio_blk", Table: "gpt", DiskGUID: guid, Movable: true,
			Partitions: []manifest.Partition{
				{Number: 1, Name: "vda1", Dev: "254:1"},
				{Number: 2, Name: "vda2", Dev: "254:2"},
			},
		}, {
			Name: "vdb", Dev: "254:16", PCI: "0000:00:04.0", Driver: "virtio_blk", Table: "gpt", DiskGUID: "0A0B0C0D-1111-2222-3333-444455556666",
			Partitions: []manifest.Partition{{Number: 1, Name: "vdb1", Dev: "254:17"}},
		}},
		DM: []manifest.DMDevice{
			{Name: "vg0-root", Dev: "253:0", Table: rootOld, Slaves: []string{"vda1"}, Suspended: true},
			{Name: "vg0-swap", Dev: "253:1", Table: swapOld, Slaves: []string{"vda1"}},
			{Name: "data", Dev: "253:2", Table: dataTbl, Slaves: []string{"vdb1"}},
		},
		NICs: []manifest.NIC{{Name: "enp0s2", MAC: srcMAC, Driver: "virtio_net", PCI: oldNIC, Addresses: []string{"10.0.2.15/24"}, Routes: []string{"default via 10.0.2.2"}}},
	}
}

func diskRow() plan.Device {
	return plan.Device{
		Kind:   "disk",
		Action: plan.Redirect,
		Source: plan.DeviceEnd{Name: "vda", PCI: oldDisk, Driver: "virtio_blk", DM: []string{"vg0-root", "vg0-swap"}, DiskGUID: guid, Movable: true, Partition: []string{"254:1", "254:2"}},
		Target: &plan.DeviceEnd{Name: "sda", PCI: newDisk, Driver: "vmw_pvscsi", Origin: plan.OriginModule, Modules: []string{"scsi_mod", "vmw_pvscsi", "sd_mod"}},
	}
}

func keptDiskRow() plan.Device {
	return plan.Device{
		Kind:   "disk",
		Action: plan.Keep,
		Source: plan.DeviceEnd{Name: "vdb", PCI: "0000:00:04.0", Driver: "virtio_blk", DM: []string{"data"}, DiskGUID: "0A0B0C0D-1111-2222-3333-444455556666"},
		Target: &plan.DeviceEnd{Name: "vdb", PCI: "0000:00:04.0", Driver: "virtio_blk", Origin: plan.OriginLoaded},
	}
}

func nicRow() plan.Device {
	return plan.Device{
		Kind:   "nic",
		Action: plan.Rebind,
		Source: plan.DeviceEnd{Name: "enp0s2", PCI: oldNIC, Driver: "virtio_net", MAC: srcMAC, Addresses: []string{"10.0.2.15/24"}, Routes: []string{"default via 10.0.2.2"}},
		Target: &plan.DeviceEnd{PCI: newNIC, Driver: "vmxnet3", Origin: plan.OriginModule, Modules: []string{"vmxnet3"}, MAC: srcMAC},
	}
}

const (
	claimParams = "mem_address=0x20000000 mem_size=0x20000000 record_size=0x100000 console_size=0 ftrace_size=0 pmsg_size=0 ecc=0"
	claimStep   = "claim 0x20000000-0x3fffffff from the PCI allocator (ramoops, 512 zones)"
)

// e7Plan is E6's plan on a machine with twice the RAM.
func e7Plan() *plan.Plan {
	p := e6Plan()
	p.Claim = &plan.Claim{Start: 0x20000000, End: 0x40000000, Zone: 1 << 20, Module: "ramoops", Params: claimParams}
	return p
}

const (
	hotParams = "windows=20000000-40000000 ranges=20000000-38000000"
	hotStep   = "add 384 MiB of RAM: load module thaw_hotadd " + hotParams
	cpuParams = hotParams + " cpus=1"
	cpuStep   = "add 384 MiB of RAM and 1 CPU(s): load module thaw_hotadd " + cpuParams
)

// e10Plan is E7's with the pack's thaw_hotadd: 384 MiB of whole blocks
// added, the source's PCI window moved above this machine's RAM.
func e10Plan() *plan.Plan {
	p := e7Plan()
	p.HotAdd = &plan.HotAdd{Module: "thaw_hotadd", Ranges: []manifest.PhysRange{{Start: 0x20000000, End: 0x38000000}},
		Block: 128 << 20, Bytes: 384 << 20, Windows: []plan.WindowMove{{From: 0x20000000, To: 0x40000000}}, Params: hotParams}
	return p
}

// e10CPUPlan is e10Plan with a CPU to bring online.
func e10CPUPlan() *plan.Plan {
	p := e10Plan()
	p.HotAdd.CPUs, p.HotAdd.Params = 1, cpuParams
	return p
}

const (
	e13Params   = "hold=254:0"
	e13HoldStep = "hold the bios of vda (254:0) until the new disk is found: load module thaw_redirect " + e13Params
	e13SendStep = "send the bios of vda (254:0) to sda (8:0): thaw_redirect"
)

// plainSource is the E9 server: root and swap on vda's partitions, no
// device-mapper at all.
func plainSource(src *manifest.Manifest) {
	src.DM = nil
	src.Disks[0].Movable = false
}

// e13Log and e13Steps are what E13's takeover does and reports, whether
// or not thaw_redirect loaded: the send is tried either way.
func e13Log() []string {
	return cat([]string{"load thaw_redirect " + e13Params}, e6ModLoads, []string{"pci rescan", "param thaw_redirect to=254:0=8:0"})
}

func e13Steps() []string {
	return cat(e6ModSteps, []string{"rescan the PCI bus", findStep, "vda is now sda (8:0)", e13SendStep, nicStep})
}

// e13Plan moves the plain-partition disk with the pack's thaw_redirect.
func e13Plan() *plan.Plan {
	p := e6Plan()
	row := &p.Devices[0]
	row.Source.DM, row.Source.Movable, row.Via = nil, false, plan.RedirectModule
	p.Redirect = &plan.Redirection{Module: plan.RedirectModule, Disks: []string{"254:0"}, Params: e13Params}
	p.Modules = append([]string{"thaw_redirect"}, e6Modules...)
	return p
}

func e6Plan() *plan.Plan {
	return &plan.Plan{OK: true, Devices: []plan.Device{diskRow(), keptDiskRow(), nicRow()}, Modules: e6Modules}
}

// fakeDM is device-mapper in memory: devices in List order, their live
// tables and the tables loaded but not yet resumed.
type fakeDM struct {
	sys      *fakeSys
	order    []string
	info     map[string]*dm.Info
	live     map[string][]dm.Target
	inactive map[string][]dm.Target
	fail     map[string]error // "suspend NAME", "load NAME", "resume NAME", "list", "table NAME"
}

func (d *fakeDM) List() ([]dm.Info, error) {
	if err := d.fail["list"]; err != nil {
		return nil, err
	}
	var out []dm.Info
	for _, n := range d.order {
		out = append(out, *d.info[n])
	}
	return out, nil
}

func (d *fakeDM) get(name string) (*dm.Info, error) {
	in := d.info[name]
	if in == nil {
		return nil, fmt.Errorf("dm %s: no such device-mapper device", name)
	}
	return in, nil
}

func (d *fakeDM) Table(name string) ([]dm.Target, error) {
	if _, err := d.get(name); err != nil {
		return nil, err
	}
	if err := d.fail["table "+name]; err != nil {
		return nil, err
	}
	return slices.Clone(d.live[name]), nil
}

func (d *fakeDM) Load(name string, t []dm.Target, readOnly bool) error {
	mode := "rw"
	if readOnly {
		mode = "ro"
	}
	d.sys.record("dm load %s %s %s", name, dm.FormatTable(t), mode)
	in, err := d.get(name)
	if err != nil {
		return err
	}
	if err := d.fail["load "+name]; err != nil {
		return err
	}
	d.inactive[name] = slices.Clone(t)
	in.InactivePresent = true
	return nil
}

func (d *fakeDM) Suspend(name string, f dm.SuspendFlags) error {
	d.sys.record("dm suspend %s %s", name, flagNames(f))
	in, err := d.get(name)
	if err != nil {
		return err
	}
	if err := d.fail["suspend "+name]; err != nil {
		return err
	}
	in.Suspended = true
	return nil
}

func (d *fakeDM) Resume(name string) error {
	d.sys.record("dm resume %s", name)
	in, err := d.get(name)
	if err != nil {
		return err
	}
	if err := d.fail["resume "+name]; err != nil {
		return err
	}
	if in.InactivePresent {
		d.live[name] = d.inactive[name]
		delete(d.inactive, name)
		in.InactivePresent = false
	}
	in.Suspended = false
	return nil
}

func flagNames(f dm.SuspendFlags) string {
	var n []string
	if f&dm.NoFlush != 0 {
		n = append(n, "noflush")
	}
	if f&dm.SkipLockfs != 0 {
		n = append(n, "skiplockfs")
	}
	if rest := f &^ (dm.NoFlush | dm.SkipLockfs); rest != 0 {
		n = append(n, fmt.Sprintf("%#x", uint32(rest)))
	}
	if len(n) == 0 {
		return "lockfs"
	}
	return strings.Join(n, "|")
}

// fakeLink is a network interface of fakeNIC.
type fakeLink struct {
	name   string
	index  int
	mac    net.HardwareAddr
	up     bool
	addrs  []string
	routes []string
}

// fakeNIC is the network stack in memory: the stale enp0s2 from the
// start, the new NIC's netdev from the PCI rescan on.
type fakeNIC struct {
	links []*fakeLink
	pci   map[string]string // PCI address → netdev, once it is there
	ops   []string
	slept int
}

func (n *fakeNIC) byName(name string) *fakeLink {
	for _, l := range n.links {
		if l.name == name {
			return l
		}
	}
	return nil
}

func (n *fakeNIC) byIndex(i int) (*fakeLink, error) {
	for _, l := range n.links {
		if l.index == i {
			return l, nil
		}
	}
	return nil, fmt.Errorf("link index %d: no such device", i)
}

func (n *fakeNIC) Netdevs(pci string) ([]string, error) {
	if name := n.pci[pci]; name != "" {
		return []string{name}, nil
	}
	return nil, nil
}

func (n *fakeNIC) LinkByName(name string) (nicmove.Link, error) {
	l := n.byName(name)
	if l == nil {
		return nicmove.Link{}, fmt.Errorf("%s: %w", name, nicmove.ErrNoLink)
	}
	return nicmove.Link{Name: l.name, Index: l.index, MAC: slices.Clone(l.mac), Up: l.up, Driver: "fake"}, nil
}

func (n *fakeNIC) SetDown(i int) error {
	l, err := n.byIndex(i)
	if err != nil {
		return err
	}
	n.ops = append(n.ops, "down "+l.name)
	l.up, l.routes = false, nil
	return nil
}

func (n *fakeNIC) SetUp(i int) error {
	l, err := n.byIndex(i)
	if err != nil {
		return err
	}
	n.ops = append(n.ops, "up "+l.name)
	l.up = true
	return nil
}

func (n *fakeNIC) Rename(i int, name string) error {
	l, err := n.byIndex(i)
	if err != nil {
		return err
	}
	n.ops = append(n.ops, "rename "+l.name+" "+name)
	// Linux 6.2 and later rename a running link.
	if n.byName(name) != nil {
		return errors.New("file exists")
	}
	l.name = name
	return nil
}

func (n *fakeNIC) SetMAC(i int, mac net.HardwareAddr) error {
	l, err := n.byIndex(i)
	if err != nil {
		return err
	}
	n.ops = append(n.ops, "mac "+l.name+" "+mac.String())
	if l.up {
		return errors.New("device or resource busy")
	}
	l.mac = slices.Clone(mac)
	return nil
}

func (n *fakeNIC) Addrs(i int) ([]*net.IPNet, error) {
	l, err := n.byIndex(i)
	if err != nil {
		return nil, err
	}
	var out []*net.IPNet
	for _, a := range l.addrs {
		ip, nw, err := net.ParseCIDR(a)
		if err != nil {
			return nil, err
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		out = append(out, &net.IPNet{IP: ip, Mask: nw.Mask})
	}
	return out, nil
}

func (n *fakeNIC) AddAddr(i int, a *net.IPNet) error {
	l, err := n.byIndex(i)
	if err != nil {
		return err
	}
	n.ops = append(n.ops, "addaddr "+l.name+" "+a.String())
	l.addrs = append(l.addrs, a.String())
	return nil
}

func (n *fakeNIC) DelAddr(i int, a *net.IPNet) error {
	l, err := n.byIndex(i)
	if err != nil {
		return err
	}
	n.ops = append(n.ops, "deladdr "+l.name+" "+a.String())
	j := slices.Index(l.addrs, a.String())
	if j < 0 {
		return errors.New("cannot assign requested address")
	}
	l.addrs = slices.Delete(l.addrs, j, j+1)
	return nil
}

func routeText(dst *net.IPNet, gw net.IP) string {
	s := "default"
	if dst != nil {
		if ones, _ := dst.Mask.Size(); ones != 0 {
			s = dst.String()
		}
	}
	if gw != nil {
		s += " via " + gw.String()
	}
	return s
}

func (n *fakeNIC) AddRoute(i int, dst *net.IPNet, gw net.IP) error {
	l, err := n.byIndex(i)
	if err != nil {
		return err
	}
	r := routeText(dst, gw)
	n.ops = append(n.ops, "addroute "+l.name+" "+r)
	l.routes = append(l.routes, r)
	return nil
}

func (n *fakeNIC) ReplaceRoute(i int, dst *net.IPNet, gw net.IP) error {
	l, err := n.byIndex(i)
	if err != nil {
		return err
	}
	r := routeText(dst, gw)
	n.ops = append(n.ops, "replaceroute "+l.name+" "+r)
	if !slices.Contains(l.routes, r) {
		l.routes = append(l.routes, r)
	}
	return nil
}

func (n *fakeNIC) Sleep(time.Duration) { n.slept++ }

// fakeSys is the resumed machine: the source's controllers still in the
// kernel's PCI list, the new pvscsi disk and vmxnet3 NIC
// only after the rescan (the disk after some more polls).
type fakeSys struct {
	log       []string // what changed, in order
	present   map[string]bool
	modFail   map[string]error
	rescanned bool
	kept      []Disk // disks there from the start
	moved     Disk   // the new disk
	appear    int    // Disks polls after the rescan that do not show it yet; -1: never
	partsLate int    // polls after it appears that show it without partitions
	polls     int    // Disks polls after the rescan
	sleeps    int
	deadRead  bool // the dead vda was opened
	claimOK   bool // the claim shows in iomem
	cpus      int  // CPUs OnlineCPUs brings
	dmErr     error
	dmOpens   int
	dm        *fakeDM
	nic       *fakeNIC
}

func (s *fakeSys) record(format string, a ...any) { s.log = append(s.log, fmt.Sprintf(format, a...)) }

func (s *fakeSys) LoadModule(m Module) error {
	if m.Params != "" {
		s.record("load %s %s", m.Name, m.Params)
	} else {
		s.record("load %s", m.Name)
	}
	if string(m.Image) != "image of "+m.Name {
		return fmt.Errorf("module %s: wrong image %q", m.Name, m.Image)
	}
	return s.modFail[m.Name]
}

func (s *fakeSys) PCIPresent(addr string) bool { return s.present[addr] }

func (s *fakeSys) SetParam(module, name, value string) error {
	s.record("param %s %s=%s", module, name, value)
	if !slices.Contains(s.log, "load "+module+" "+e13Params) || s.modFail[module] != nil {
		return fmt.Errorf("/sys/module/%s/parameters/%s: no such file", module, name)
	}
	return nil
}

func (s *fakeSys) OnlineCPUs() (int, error) {
	s.record("online cpus")
	return s.cpus, nil
}

func (s *fakeSys) OnlineMemory(n uint64) error {
	s.record("online memory %d", n)
	return nil
}

func (s *fakeSys) Claimed(start, end uint64, name string) (bool, error) {
	s.record("claimed %#x-%#x %s", start, end, name)
	return s.claimOK, nil
}

func (s *fakeSys) PCIRescan() error {
	s.record("pci rescan")
	s.rescanned = true
	s.present[newDisk], s.present[newNIC] = true, true
	if s.nic.byName("eth0") == nil {
		s.nic.links = append(s.nic.links, &fakeLink{name: "eth0", index: 3, mac: mustMAC(newMAC)})
		s.nic.pci[newNIC] = "eth0"
	}
	return nil
}

// Disks: the stale vda (254:0) is dead; reading its GPT would hang.
func (s *fakeSys) Disks(skip map[string]bool) ([]Disk, error) {
	var ds []Disk
	for _, d := range s.kept {
		if skip[d.Dev] {
			continue
		}
		if d.Dev == "254:0" && s.rescanned {
			s.deadRead = true
		}
		ds = append(ds, d)
	}
	if !s.rescanned {
		return ds, nil
	}
	s.polls++
	if s.appear >= 0 && s.polls > s.appear {
		d := s.moved
		if s.polls <= s.appear+s.partsLate {
			d.Parts = map[int]string{} // the partition table not read yet
		}
		ds = append(ds, d)
	}
	return ds, nil
}

func (s *fakeSys) DM() (DM, error) {
	s.dmOpens++
	if s.dmErr != nil {
		return nil, s.dmErr
	}
	return s.dm, nil
}

func (s *fakeSys) NIC() nicmove.Sys { return s.nic }

func (s *fakeSys) Sleep(time.Duration) { s.sleeps++ }

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func mustTable(s string) []dm.Target {
	t, err := dm.ParseTable(s)
	if err != nil {
		panic(err)
	}
	return t
}

// resumed is the E6 machine right after the resume: vg0-root suspended by
// the capture, the source's controllers still listed, vdb still there,
// the new disk (sda, whose GUID the kernel reads in lower case) after the
// rescan and two more polls.
func resumed() *fakeSys {
	s := &fakeSys{
		present: map[string]bool{oldDisk: true, oldNIC: true, "0000:00:04.0": true},
		modFail: map[string]error{},
		kept:    []Disk{{Name: "vda", Dev: "254:0"}, {Name: "vdb", Dev: "254:16", GUID: "0A0B0C0D-1111-2222-3333-444455556666", Parts: map[int]string{1: "254:17"}}},
		moved:   Disk{Name: "sda", Dev: "8:0", GUID: strings.ToLower(guid), Parts: map[int]string{1: "8:1", 2: "8:2"}},
		appear:  2,
	}
	s.dm = &fakeDM{
		sys:   s,
		order: []string{"vg0-root", "vg0-swap", "data"},
		info: map[string]*dm.Info{
			"vg0-root": {Name: "vg0-root", Dev: dev("253:0"), Suspended: true, ActivePresent: true, TargetCount: 1},
			"vg0-swap": {Name: "vg0-swap", Dev: dev("253:1"), ActivePresent: true, TargetCount: 1},
			"data":     {Name: "data", Dev: dev("253:2"), ActivePresent: true, TargetCount: 1},
		},
		live: map[string][]dm.Target{
			"vg0-root": mustTable(rootOld),
			"vg0-swap": mustTable(swapOld),
			"data":     mustTable(dataTbl),
		},
		inactive: map[string][]dm.Target{},
		fail:     map[string]error{},
	}
	s.nic = &fakeNIC{
		pci: map[string]string{oldNIC: "enp0s2"},
		links: []*fakeLink{
			{name: "lo", index: 1, mac: mustMAC("00:00:00:00:00:00"), up: true, addrs: []string{"127.0.0.1/8"}},
			{name: "enp0s2", index: 2, mac: mustMAC(srcMAC), up: true, addrs: []string{"10.0.2.15/24"}, routes: []string{"default via 10.0.2.2"}},
		},
	}
	return s
}

func dev(s string) uint64 {
	d, ok := dm.ParseDev(s)
	if !ok {
		panic(s)
	}
	return d
}

func modules(names ...string) []Module {
	var out []Module
	for _, n := range names {
		out = append(out, Module{Name: n, Image: []byte("image of " + n)})
	}
	return out
}

// timeouts makes the waits short for the test.
func timeouts(t *testing.T) {
	t.Helper()
	disk, nic := DiskTimeout, NICTimeout
	DiskTimeout, NICTimeout = 50*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { DiskTimeout, NICTimeout = disk, nic })
}

// logger collects what Quiesce and Apply log.
type logger struct{ lines []string }

func (l *logger) logf(format string, a ...any) { l.lines = append(l.lines, fmt.Sprintf(format, a...)) }

func whats(r *Report) []string {
	var out []string
	for _, l := range r.Lines {
		out = append(out, l.What)
	}
	return out
}

func failed(r *Report) map[string]string {
	out := map[string]string{}
	for _, l := range r.Lines {
		if l.Err != nil {
			out[l.What] = l.Err.Error()
		}
	}
	return out
}

func TestQuiesce(t *testing.T) {
	for _, tt := range []struct {
		name  string
		plan  func() *plan.Plan
		setup func(*fakeSys, *manifest.Manifest)
		log   []string          // what changed
		steps []string          // report lines
		fail  map[string]string // step → a substring of its error
		opens int               // DM() calls
		mods  []string          // in the mailbox
	}{{
		name:  "E6: the swap LV suspended without flush, the root LV left to the capture",
		plan:  e6Plan,
		log:   []string{"dm suspend vg0-swap noflush|skiplockfs"},
		steps: []string{"suspend vg0-swap (noflush) until its disk is back"},
		opens: 1,
	}, {
		name:  "no plan",
		plan:  func() *plan.Plan { return nil },
		opens: 0,
	}, {
		name: "no moved disk",
		plan: func() *plan.Plan {
			return &plan.Plan{OK: true, Devices: []plan.Device{keptDiskRow(), nicRow()}}
		},
		opens: 0,
	}, {
		name: "nothing suspended by the capture; an LV on two moved disks suspended once",
		plan: func() *plan.Plan {
			p := e6Plan()
			second := diskRow()
			second.Source.Name, second.Source.PCI, second.Source.DM = "vdc", "0000:00:05.0", []string{"vg0-root"}
			p.Devices = append(p.Devices, second)
			return p
		},
		setup: func(_ *fakeSys, m *manifest.Manifest) { m.DM[0].Suspended = false },
		log:   []string{"dm suspend vg0-root noflush|skiplockfs", "dm suspend vg0-swap noflush|skiplockfs"},
		steps: []string{"suspend vg0-root (noflush) until its disk is back", "suspend vg0-swap (noflush) until its disk is back"},
		opens: 1,
	}, {
		name: "a failed suspend is reported",
		plan: e6Plan,
		setup: func(s *fakeSys, _ *manifest.Manifest) {
			s.dm.fail["suspend vg0-swap"] = errors.New("device busy")
		},
		log:   []string{"dm suspend vg0-swap noflush|skiplockfs"},
		steps: []string{"suspend vg0-swap (noflush) until its disk is back"},
		fail:  map[string]string{"suspend vg0-swap (noflush) until its disk is back": "device busy"},
		opens: 1,
	}, {
		name:  "no device-mapper",
		plan:  e6Plan,
		setup: func(s *fakeSys, _ *manifest.Manifest) { s.dmErr = errors.New("open /dev/mapper/control: no such file") },
		steps: []string{"device-mapper"},
		fail:  map[string]string{"device-mapper": "/dev/mapper/control"},
		opens: 1,
	}, {
		name:  "E13: plain partitions: thaw_redirect holds vda's bios; no device-mapper opened",
		plan:  e13Plan,
		mods:  append([]string{"thaw_redirect"}, e6Modules...),
		setup: func(_ *fakeSys, src *manifest.Manifest) { plainSource(src) },
		log:   []string{"load thaw_redirect " + e13Params},
		steps: []string{e13HoldStep},
	}, {
		name:  "E13: the mailbox lacks thaw_redirect: named",
		plan:  e13Plan,
		mods:  e6Modules,
		setup: func(_ *fakeSys, src *manifest.Manifest) { plainSource(src) },
		steps: []string{e13HoldStep},
		fail:  map[string]string{e13HoldStep: "the mailbox carries no thaw_redirect"},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			s, src := resumed(), source()
			if tt.setup != nil {
				tt.setup(s, src)
			}
			lg := &logger{}
			r := Quiesce(s, tt.plan(), modules(tt.mods...), src, lg.logf)
			if !reflect.DeepEqual(s.log, tt.log) {
				t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(s.log, "\n"), strings.Join(tt.log, "\n"))
			}
			if got := whats(r); !reflect.DeepEqual(got, tt.steps) {
				t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.steps, "\n"))
			}
			checkFailures(t, r, tt.fail)
			if s.dmOpens != tt.opens {
				t.Errorf("DM() called %d times, want %d", s.dmOpens, tt.opens)
			}
			if len(s.nic.ops) != 0 || s.polls != 0 {
				t.Errorf("Quiesce touched the network (%q) or polled for disks (%d)", s.nic.ops, s.polls)
			}
			checkLogged(t, lg, r)
		})
	}
}

func checkFailures(t *testing.T, r *Report, want map[string]string) {
	t.Helper()
	got := failed(r)
	if len(got) != len(want) {
		t.Errorf("failed steps %q, want those of %q", got, want)
	}
	for what, sub := range want {
		if e, ok := got[what]; !ok || !strings.Contains(e, sub) {
			t.Errorf("step %q: error %q, want one containing %q", what, e, sub)
		}
	}
	if r.Failed() != (len(want) > 0) {
		t.Errorf("Failed() = %v with failures %q", r.Failed(), got)
	}
}

// checkLogged checks that each report line went to logf as it happened.
func checkLogged(t *testing.T, lg *logger, r *Report) {
	t.Helper()
	for _, l := range r.Lines {
		if !slices.Contains(lg.lines, "takeover: "+l.String()) {
			t.Errorf("report line %q was not logged; log:\n%s", l, strings.Join(lg.lines, "\n"))
		}
	}
}

var (
	e6ModLoads = []string{"load scsi_mod", "load vmw_pvscsi", "load sd_mod", "load vmxnet3"}
	e6ModSteps = []string{"load module scsi_mod", "load module vmw_pvscsi", "load module sd_mod", "load module vmxnet3"}
	leaveRoot  = "leave vg0-root suspended"
	leaveSwap  = "leave vg0-swap suspended"
	repointLog = []string{
		"dm load vg0-root " + rootNew + " rw", "dm resume vg0-root",
		"dm load vg0-swap " + swapNew + " rw", "dm resume vg0-swap",
	}
	repointSteps = []string{
		"load vg0-root: " + rootNew, "resume vg0-root",
		"load vg0-swap: " + swapNew, "resume vg0-swap",
	}
	// e10CPULog and e10CPUSteps are E10's with a CPU to bring online:
	// the RAM onlined with the module, the CPU once thawed.
	e10CPULog = cat(
		[]string{"dm suspend vg0-swap noflush|skiplockfs", "load thaw_hotadd " + cpuParams, "online memory 4", "online memory 5", "online memory 6", "load reed_solomon"},
		e6ModLoads,
		[]string{"pci rescan"},
		repointLog,
		[]string{"online cpus"})
	e10CPUSteps = cat(
		[]string{cpuStep, "online 3 memory block(s) of 128 MiB", "load module reed_solomon"},
		e6ModSteps,
		[]string{"rescan the PCI bus", findStep, "vda is now sda (8:0)"},
		repointSteps,
		[]string{nicStep, "online 1 CPU(s)"})
)

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// nicMoved checks that the new NIC took the source's name, MAC, addresses
// and routes, and that the stale virtio-net got out of the way while up
// (its close oopses after the failed restore).
func nicMoved(t *testing.T, s *fakeSys) {
	t.Helper()
	l := s.nic.byName("enp0s2")
	if l == nil || l.index != 3 {
		t.Fatalf("enp0s2 is %+v, want the new NIC (index 3)", l)
	}
	if l.mac.String() != srcMAC || !l.up || !reflect.DeepEqual(l.addrs, []string{"10.0.2.15/24"}) || !reflect.DeepEqual(l.routes, []string{"default via 10.0.2.2"}) {
		t.Errorf("enp0s2: MAC %s, up %v, addresses %q, routes %q; want %s, up, [10.0.2.15/24], [default via 10.0.2.2]", l.mac, l.up, l.addrs, l.routes, srcMAC)
	}
	old := s.nic.byName("old0")
	if old == nil || old.index != 2 || !old.up || len(old.addrs) != 0 {
		t.Errorf("old0 is %+v, want the stale NIC (index 2), still up, with no addresses", old)
	}
	if s.nic.byName("eth0") != nil {
		t.Errorf("eth0 is still there")
	}
}

// nicUntouched checks that the network was left alone.
func nicUntouched(t *testing.T, s *fakeSys) {
	t.Helper()
	if len(s.nic.ops) != 0 {
		t.Errorf("network changes %q, want none", s.nic.ops)
	}
}

// tables checks the live tables and that nothing is left suspended or
// loaded but not resumed.
func tables(t *testing.T, s *fakeSys, want map[string]string) {
	t.Helper()
	for name, tbl := range want {
		if got := dm.FormatTable(s.dm.live[name]); got != tbl {
			t.Errorf("live table of %s: %q, want %q", name, got, tbl)
		}
	}
	for _, name := range s.dm.order {
		if in := s.dm.info[name]; in.Suspended || in.InactivePresent {
			t.Errorf("%s: suspended %v, inactive table %v; want neither", name, in.Suspended, in.InactivePresent)
		}
	}
}

func TestApply(t *testing.T) {
	timeouts(t)
	for _, tt := range []struct {
		name  string
		plan  func() *plan.Plan
		mods  []string
		setup func(*fakeSys, *manifest.Manifest)
		log   []string          // what changed, Quiesce's included
		steps []string          // Apply's report lines
		fail  map[string]string // step → a substring of its error
		check func(*testing.T, *fakeSys)
	}{{
		name: "E6: pvscsi disk and vmxnet3 NIC",
		plan: e6Plan,
		mods: e6Modules,
		log: cat(
			[]string{"dm suspend vg0-swap noflush|skiplockfs"},
			e6ModLoads,
			[]string{"pci rescan"},
			repointLog),
		steps: cat(
			e6ModSteps,
			[]string{"rescan the PCI bus", findStep, "vda is now sda (8:0)"},
			repointSteps,
			[]string{nicStep}),
		check: func(t *testing.T, s *fakeSys) {
			tables(t, s, map[string]string{"vg0-root": rootNew, "vg0-swap": swapNew, "data": dataTbl})
			if s.polls != 3 || s.sleeps != 2 {
				t.Errorf("%d disk polls and %d sleeps, want 3 and 2", s.polls, s.sleeps)
			}
			if !s.present[oldDisk] || !s.present[oldNIC] {
				t.Errorf("PCI devices %v: want the stale %s and %s kept", s.present, oldDisk, oldNIC)
			}
			nicMoved(t, s)
		},
	}, {
		name:  "E13: plain partitions: the bios held from the resume, sent to the new disk once found",
		plan:  e13Plan,
		mods:  append([]string{"thaw_redirect"}, e6Modules...),
		setup: func(_ *fakeSys, src *manifest.Manifest) { plainSource(src) },
		log:   e13Log(),
		steps: e13Steps(),
		check: func(t *testing.T, s *fakeSys) {
			if s.dmOpens != 0 {
				t.Errorf("device-mapper opened %d times: the server has none", s.dmOpens)
			}
			nicMoved(t, s)
		},
	}, {
		name: "E13: thaw_redirect does not load: the bios stay held, the send fails by name, the NIC still moves",
		plan: e13Plan,
		mods: append([]string{"thaw_redirect"}, e6Modules...),
		setup: func(s *fakeSys, src *manifest.Manifest) {
			plainSource(src)
			s.modFail = map[string]error{"thaw_redirect": errors.New("init_module thaw_redirect: no such device")}
		},
		log:   e13Log(),
		steps: e13Steps(),
		fail:  map[string]string{e13SendStep: "no such file"},
		check: nicMoved,
	}, {
		name:  "E7: the target's extra RAM claimed before the rescan",
		plan:  e7Plan,
		mods:  append([]string{"reed_solomon", "ramoops"}, e6Modules...),
		setup: func(s *fakeSys, _ *manifest.Manifest) { s.claimOK = true },
		log: cat(
			[]string{"dm suspend vg0-swap noflush|skiplockfs", "load reed_solomon", "load ramoops " + claimParams},
			e6ModLoads,
			[]string{"claimed 0x20000000-0x40000000 ramoops", "pci rescan"},
			repointLog),
		steps: cat(
			[]string{"load module reed_solomon", "load module ramoops " + claimParams},
			e6ModSteps,
			[]string{claimStep, "rescan the PCI bus", findStep, "vda is now sda (8:0)"},
			repointSteps,
			[]string{nicStep}),
		check: func(t *testing.T, s *fakeSys) {
			tables(t, s, map[string]string{"vg0-root": rootNew, "vg0-swap": swapNew})
			nicMoved(t, s)
		},
	}, {
		name: "E10: the extra RAM added and onlined first, the window moved: no claim",
		plan: e10Plan,
		mods: append([]string{"thaw_hotadd", "reed_solomon", "ramoops"}, e6Modules...),
		log: cat(
			[]string{"dm suspend vg0-swap noflush|skiplockfs", "load thaw_hotadd " + hotParams, "online memory 4", "online memory 5", "online memory 6", "load reed_solomon"},
			e6ModLoads,
			[]string{"pci rescan"},
			repointLog),
		steps: cat(
			[]string{hotStep, "online 3 memory block(s) of 128 MiB", "load module reed_solomon"},
			e6ModSteps,
			[]string{"rescan the PCI bus", findStep, "vda is now sda (8:0)"},
			repointSteps,
			[]string{nicStep}),
		check: func(t *testing.T, s *fakeSys) {
			tables(t, s, map[string]string{"vg0-root": rootNew, "vg0-swap": swapNew})
			nicMoved(t, s)
		},
	}, {
		name:  "E10 with a CPU: RAM onlined, the CPU once thawed",
		plan:  e10CPUPlan,
		mods:  append([]string{"thaw_hotadd", "reed_solomon", "ramoops"}, e6Modules...),
		setup: func(s *fakeSys, _ *manifest.Manifest) { s.cpus = 1 },
		log:   e10CPULog,
		steps: e10CPUSteps,
		check: func(t *testing.T, s *fakeSys) {
			tables(t, s, map[string]string{"vg0-root": rootNew, "vg0-swap": swapNew})
		},
	}, {
		name:  "E10 with a CPU that does not come: named, the rest goes on",
		plan:  e10CPUPlan,
		mods:  append([]string{"thaw_hotadd", "reed_solomon", "ramoops"}, e6Modules...),
		log:   e10CPULog,
		steps: e10CPUSteps,
		fail:  map[string]string{"online 1 CPU(s)": "0 of 1 came online"},
		check: func(t *testing.T, s *fakeSys) {
			tables(t, s, map[string]string{"vg0-root": rootNew, "vg0-swap": swapNew})
		},
	}, {
		name: "E10: the RAM cannot be added: the claim as on E7",
		plan: e10Plan,
		mods: append([]string{"thaw_hotadd", "reed_solomon", "ramoops"}, e6Modules...),
		setup: func(s *fakeSys, _ *manifest.Manifest) {
			s.claimOK = true
			s.modFail["thaw_hotadd"] = errors.New("init_module thaw_hotadd: device or resource busy")
		},
		log: cat(
			[]string{"dm suspend vg0-swap noflush|skiplockfs", "load thaw_hotadd " + hotParams, "load reed_solomon", "load ramoops " + claimParams},
			e6ModLoads,
			[]string{"claimed 0x20000000-0x40000000 ramoops", "pci rescan"},
			repointLog),
		steps: cat(
			[]string{hotStep, "load module reed_solomon", "load module ramoops " + claimParams},
			e6ModSteps,
			[]string{claimStep, "rescan the PCI bus", findStep, "vda is now sda (8:0)"},
			repointSteps,
			[]string{nicStep}),
		fail: map[string]string{hotStep: "device or resource busy"},
		check: func(t *testing.T, s *fakeSys) {
			tables(t, s, map[string]string{"vg0-root": rootNew, "vg0-swap": swapNew})
		},
	}, {
		name: "E7: the claim does not show: no rescan, the LVs stay suspended",
		plan: e7Plan,
		mods: append([]string{"reed_solomon", "ramoops"}, e6Modules...),
		log: cat(
			[]string{"dm suspend vg0-swap noflush|skiplockfs", "load reed_solomon", "load ramoops " + claimParams},
			e6ModLoads,
			[]string{"claimed 0x20000000-0x40000000 ramoops"}),
		steps: cat(
			[]string{"load module reed_solomon", "load module ramoops " + claimParams},
			e6ModSteps,
			[]string{claimStep, "rescan the PCI bus", findStep, leaveRoot, leaveSwap, nicStep}),
		fail: map[string]string{
			claimStep:            "does not show ramoops over the whole range",
			"rescan the PCI bus": "BARs would land in RAM",
			findStep:             "no disk with GUID",
			leaveRoot:            "dead disk", leaveSwap: "dead disk",
			nicStep: "",
		},
		check: func(t *testing.T, s *fakeSys) {
			if s.rescanned {
				t.Errorf("rescanned without the claim")
			}
		},
	}, {
		name:  "no plan: only what the capture suspended is resumed",
		plan:  func() *plan.Plan { return nil },
		log:   []string{"dm resume vg0-root"},
		steps: []string{"resume vg0-root"},
		check: func(t *testing.T, s *fakeSys) {
			tables(t, s, map[string]string{"vg0-root": rootOld, "vg0-swap": swapOld, "data": dataTbl})
			if s.polls != 0 || s.rescanned || !s.present[oldDisk] {
				t.Errorf("%d disk polls, rescanned %v, %s present %v; want none, false, true", s.polls, s.rescanned, oldDisk, s.present[oldDisk])
			}
			nicUntouched(t, s)
		},
	}, {
		name: "no plan: the capture's record alone resumes a device",
		plan: func() *plan.Plan { return nil },
		setup: func(s *fakeSys, _ *manifest.Manifest) {
			s.dm.info["vg0-root"].Suspended = false
		},
		log:   []string{"dm resume vg0-root"},
		steps: []string{"resume vg0-root"},
	}, {
		name: "no plan, nothing suspended: device-mapper left alone",
		plan: func() *plan.Plan { return nil },
		setup: func(s *fakeSys, m *manifest.Manifest) {
			m.DM[0].Suspended = false
			s.dm.info["vg0-root"].Suspended = false
		},
		check: func(t *testing.T, s *fakeSys) {
			if s.dmOpens != 0 {
				t.Errorf("DM() called %d times, want none", s.dmOpens)
			}
		},
	}, {
		name: "plan with nothing moved: no rescan, the capture's device resumed",
		plan: func() *plan.Plan {
			n := nicRow()
			n.Action, n.Target = plan.Keep, &plan.DeviceEnd{PCI: oldNIC, Driver: "virtio_net", Origin: plan.OriginLoaded}
			return &plan.Plan{OK: true, Devices: []plan.Device{keptDiskRow(), n}}
		},
		log:   []string{"dm resume vg0-root"},
		steps: []string{"resume vg0-root"},
		check: func(t *testing.T, s *fakeSys) {
			tables(t, s, map[string]string{"vg0-root": rootOld})
			nicUntouched(t, s)
		},
	}, {
		name:  "the disk never appears: the rest goes on",
		plan:  e6Plan,
		mods:  e6Modules,
		setup: func(s *fakeSys, _ *manifest.Manifest) { s.appear = -1 },
		log: cat(
			[]string{"dm suspend vg0-swap noflush|skiplockfs"},
			e6ModLoads,
			[]string{"pci rescan"}),
		steps: cat(
			e6ModSteps,
			[]string{"rescan the PCI bus", findStep, leaveRoot, leaveSwap, nicStep}),
		fail: map[string]string{findStep: "no disk with GUID " + guid + " appeared in 50ms (disks: vdb)", leaveRoot: "still names the dead disk", leaveSwap: "still names the dead disk"},
		check: func(t *testing.T, s *fakeSys) {
			if s.polls < 2 || s.sleeps != s.polls-1 {
				t.Errorf("%d disk polls and %d sleeps: want polls until the timeout, a sleep between each", s.polls, s.sleeps)
			}
			if !s.dm.info["vg0-root"].Suspended || !s.dm.info["vg0-swap"].Suspended {
				t.Errorf("vg0-root and vg0-swap resumed onto the dead disk")
			}
			nicMoved(t, s)
		},
	}, {
		name: "a module fails to load: the others and the rest go on",
		plan: e6Plan,
		mods: e6Modules,
		setup: func(s *fakeSys, _ *manifest.Manifest) {
			s.modFail["vmw_pvscsi"] = errors.New("init_module vmw_pvscsi: exec format error")
		},
		log: cat(
			[]string{"dm suspend vg0-swap noflush|skiplockfs"},
			e6ModLoads,
			[]string{"pci rescan"},
			repointLog),
		steps: cat(
			e6ModSteps,
			[]string{"rescan the PCI bus", findStep, "vda is now sda (8:0)"},
			repointSteps,
			[]string{nicStep}),
		fail: map[string]string{"load module vmw_pvscsi": "exec format error"},
		check: func(t *testing.T, s *fakeSys) {
			tables(t, s, map[string]string{"vg0-root": rootNew, "vg0-swap": swapNew})
			nicMoved(t, s)
		},
	}, {
		name:  "the stale controller is already gone: a rescan all the same",
		plan:  e6Plan,
		mods:  e6Modules,
		setup: func(s *fakeSys, _ *manifest.Manifest) { delete(s.present, oldDisk) },
		log: cat(
			[]string{"dm suspend vg0-swap noflush|skiplockfs"},
			e6ModLoads,
			[]string{"pci rescan"},
			repointLog),
		steps: cat(
			e6ModSteps,
			[]string{"rescan the PCI bus", findStep, "vda is now sda (8:0)"},
			repointSteps,
			[]string{nicStep}),
		check: func(t *testing.T, s *fakeSys) {
			tables(t, s, map[string]string{"vg0-root": rootNew, "vg0-swap": swapNew})
			nicMoved(t, s)
		},
	}, {
		name:  "the new disk's partitions show up after its GUID: waited for",
		plan:  e6Plan,
		mods:  e6Modules,
		setup: func(s *fakeSys, _ *manifest.Manifest) { s.partsLate = 3 },
		log: cat(
			[]string{"dm suspend vg0-swap noflush|skiplockfs"},
			e6ModLoads,
			[]string{"pci rescan"},
			repointLog),
		steps: cat(
			e6ModSteps,
			[]string{"rescan the PCI bus", findStep, "vda is now sda (8:0)"},
			repointSteps,
			[]string{nicStep}),
		check: func(t *testing.T, s *fakeSys) {
			tables(t, s, map[string]string{"vg0-root": rootNew, "vg0-swap": swapNew})
			if s.polls != 6 {
				t.Errorf("%d disk polls, want 6 (3 without it, 3 without its partitions)", s.polls)
			}
		},
	}, {
		name: "the new disk lacks a partition: reported, nothing re-pointed to it",
		plan: e6Plan,
		mods: e6Modules,
		setup: func(s *fakeSys, _ *manifest.Manifest) {
			s.moved.Parts = map[int]string{1: "8:1"}
		},
		log: cat(
			[]string{"dm suspend vg0-swap noflush|skiplockfs"},
			e6ModLoads,
			[]string{"pci rescan"}),
		steps: cat(
			e6ModSteps,
			[]string{"rescan the PCI bus", findStep, leaveRoot, leaveSwap},
			[]string{nicStep}),
		fail: map[string]string{findStep: "disk sda (GUID " + guid + ") shows no partition [2] after 50ms", leaveRoot: "dead disk", leaveSwap: "dead disk"},
	}, {
		name:  "no device-mapper: reported, the NIC still moved",
		plan:  e6Plan,
		mods:  []string{"vmxnet3"},
		setup: func(s *fakeSys, _ *manifest.Manifest) { s.dmErr = errors.New("open /dev/mapper/control: no such file") },
		log:   []string{"load vmxnet3", "pci rescan"},
		steps: []string{
			"load module vmxnet3", "rescan the PCI bus", findStep, "vda is now sda (8:0)",
			"device-mapper", nicStep,
		},
		fail: map[string]string{
			// Quiesce's report is not Apply's: only Apply's failure here.
			"device-mapper": "/dev/mapper/control",
		},
		check: nicMoved,
	}} {
		t.Run(tt.name, func(t *testing.T) {
			s, src := resumed(), source()
			if tt.setup != nil {
				tt.setup(s, src)
			}
			p := tt.plan()
			lg := &logger{}
			// As the capture does: Quiesce when a plan came, then
			// Apply, then Thawed.
			if p != nil {
				Quiesce(s, p, modules(tt.mods...), src, lg.logf)
			}
			r := Apply(s, p, modules(tt.mods...), src, lg.logf)
			Thawed(s, r, lg.logf)
			if !reflect.DeepEqual(s.log, tt.log) {
				t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(s.log, "\n"), strings.Join(tt.log, "\n"))
			}
			if got := whats(r); !reflect.DeepEqual(got, tt.steps) {
				t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.steps, "\n"))
			}
			checkFailures(t, r, tt.fail)
			checkLogged(t, lg, r)
			if s.deadRead {
				t.Errorf("the dead source disk vda was opened while looking for the moved one")
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

// Apply works without a logf.
func TestApplyNilLogf(t *testing.T) {
	timeouts(t)
	s := resumed()
	r := Apply(s, nil, nil, source(), nil)
	if got := whats(r); !reflect.DeepEqual(got, []string{"resume vg0-root"}) || r.Failed() {
		t.Errorf("steps %q, failed %v; want [resume vg0-root], not failed", got, r.Failed())
	}
}

func TestReportFailed(t *testing.T) {
	for _, tt := range []struct {
		name  string
		lines []Line
		want  bool
	}{
		{"empty", nil, false},
		{"all done", []Line{{What: "a"}, {What: "b", Took: time.Second}}, false},
		{"one failed", []Line{{What: "a"}, {What: "b", Err: errors.New("x")}, {What: "c"}}, true},
	} {
		r := &Report{Lines: tt.lines}
		if got := r.Failed(); got != tt.want {
			t.Errorf("%s: Failed() = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestLineString(t *testing.T) {
	pad := func(s string) string { return s + strings.Repeat(" ", 60-len(s)) }
	long := strings.Repeat("x", 70)
	for _, tt := range []struct {
		line Line
		want string
	}{
		{Line{What: "rescan the PCI bus", Took: 1500 * time.Millisecond}, pad("rescan the PCI bus") + "   1.50s"},
		{Line{What: "resume vg0-root"}, pad("resume vg0-root") + "   0.00s"},
		{Line{What: "load module vmw_pvscsi", Took: 12340 * time.Millisecond, Err: errors.New("exec format error")},
			pad("load module vmw_pvscsi") + "  12.34s FAILED: exec format error"},
		{Line{What: long, Took: 90 * time.Second}, long + "  90.00s"},
	} {
		if got := tt.line.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// A dm-crypt device straight on a moved partition is reloaded with the
// key the kernel holds: the key reaches the kernel, and no report line or
// log line carries it, even when the reload fails.
func TestApplyCryptKeyStaysInMemory(t *testing.T) {
	const key = "4a1f0c9e8b7d6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877"
	cryptOld := "0 409600 crypt aes-xts-plain64 " + key + " 0 254:2 32768"
	cryptNew := "0 409600 crypt aes-xts-plain64 " + key + " 0 8:2 32768"
	for _, loadFails := range []bool{false, true} {
		timeouts(t)
		s := resumed()
		src := source()
		src.DM = append(src.DM, manifest.DMDevice{Name: "cryptdata", Dev: "253:3", Table: dm.RedactTable(cryptOld), Slaves: []string{"vda2"}})
		s.dm.order = append(s.dm.order, "cryptdata")
		s.dm.info["cryptdata"] = &dm.Info{Name: "cryptdata", Dev: dev("253:3"), ActivePresent: true, TargetCount: 1}
		s.dm.live["cryptdata"] = mustTable(cryptOld)
		if loadFails {
			s.dm.fail["load cryptdata"] = errors.New("DM_TABLE_LOAD cryptdata: invalid argument")
		}
		lg := &logger{}
		r := Apply(s, e6Plan(), modules(e6Modules...), src, lg.logf)
		var shown []string
		for _, l := range r.Lines {
			shown = append(shown, l.String())
		}
		shown = append(shown, lg.lines...)
		all := strings.Join(shown, "\n")
		if strings.Contains(all, key) {
			t.Errorf("load fails %v: the key is in the report or the log:\n%s", loadFails, all)
		}
		if !strings.Contains(all, "load cryptdata: 0 409600 crypt aes-xts-plain64 "+dm.Hidden+" 0 8:2 32768") {
			t.Errorf("load fails %v: the reload is not shown:\n%s", loadFails, all)
		}
		if !loadFails {
			tables(t, s, map[string]string{"cryptdata": cryptNew})
		}
	}
}
