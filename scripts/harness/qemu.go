package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Disk is a drive attached to a VM.
type Disk struct {
	Path   string
	Format string // raw (default) or qcow2
	If     string // virtio (default), ...
	Addr   string // PCI slot of a virtio disk ("0x3"); "" lets QEMU choose
}

// VMConfig describes a QEMU virtual machine. Every VM runs under TCG.
type VMConfig struct {
	Name     string // used in log names
	Kernel   string // -kernel
	Initrd   string // -initrd
	Append   string // kernel command line (console=ttyS0 panic=-1 are added)
	MemoryMB int    // default 256
	CPUs     int    // default 1
	// MaxCPUs > CPUs leaves room for CPUs the firmware lists as present
	// but disabled (-smp CPUS,maxcpus=MAXCPUS): the kernel's possible set.
	MaxCPUs int
	CPU     string // -cpu model, default DefaultCPU
	Disks   []Disk
	NIC     string // "" for none, else a -nic model (virtio-net-pci, e1000 ...)
	// HostFwd are hostfwd rules of the -nic's user network
	// ("tcp:127.0.0.1:16379-:6379"): a client on the host reaches the guest.
	HostFwd  []string
	Firmware string // -bios file; "" for QEMU's default (SeaBIOS)
	Extra    []string
	// Control adds a second serial port (the guest's ttyS1) on a unix socket,
	// for Run: the server guest's testctl service reads commands there.
	Control bool
	Timeout time.Duration // hard bound on the VM's life; default 5 minutes
	// VGA adds a standard VGA card and a monitor socket, for Screendump.
	VGA bool
	// Input lets Type write to the first serial port (the guest's
	// console), as someone at it would.
	Input bool
	// Wrap runs QEMU through another command, such as
	// ip netns exec NS (a tap device lives in its namespace).
	Wrap   []string
	LogDir string // where the serial log is kept
}

// VM is a running QEMU process whose serial console is captured.
type VM struct {
	cfg     VMConfig
	cmd     *exec.Cmd
	LogPath string
	mu      sync.Mutex
	console bytes.Buffer
	cond    *sync.Cond
	done    chan struct{}
	exitErr error
	cancel  context.CancelFunc
	ctlPath string
	ctl     net.Conn
	monPath string // the monitor's socket (VGA)
	// deadline kills QEMU when the VM outlives its timeout.
	deadline *time.Timer
	timedOut bool
	ctlBuf   []byte
	input    io.WriteCloser // the console's input (Input)
}

// Type writes s to the guest's console (VMConfig.Input), a byte at a time
// with a pause between, as typed.
func (vm *VM) Type(s string) error {
	if vm.input == nil {
		return errors.New("harness: the VM was started without Input")
	}
	for i := 0; i < len(s); i++ {
		if _, err := vm.input.Write([]byte{s[i]}); err != nil {
			return fmt.Errorf("harness: type into %s: %w", vm.cfg.Name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Start launches QEMU.
// DefaultCPU is every machine's CPU model unless a test says otherwise:
// all that TCG emulates, but for the fast string instructions. With ERMS
// or FSRM the kernel clears and copies pages with REP STOSB/MOVSB, which
// TCG runs a byte at a time: hibernation's preallocation then cleared
// 0.7 MB/s and took minutes; REP STOSQ (REP_GOOD) is eight times fewer
// iterations.
const DefaultCPU = "max,-erms,-fsrm"

func Start(cfg VMConfig) (*VM, error) {
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 256
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	if cfg.CPU == "" {
		cfg.CPU = DefaultCPU
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.Name == "" {
		cfg.Name = "vm"
	}
	if cfg.LogDir == "" {
		cfg.LogDir = os.TempDir()
	}
	// More than one vCPU: one host thread runs them all. With a thread per
	// vCPU, a kernel's text patching (text_poke's int3, at "sched_clock:
	// Marking stable") was seen to race with the other vCPU's cached
	// translation: "Oops: int3" in sched_clock_idle_wakeup_event, seen
	// twice in the full runs (E7, then E3 kexec), in the image kernel's
	// own boot.
	accel := "tcg"
	smp := strconv.Itoa(cfg.CPUs)
	if cfg.MaxCPUs > cfg.CPUs {
		smp += ",maxcpus=" + strconv.Itoa(cfg.MaxCPUs)
	}
	if max(cfg.CPUs, cfg.MaxCPUs) > 1 {
		accel = "tcg,thread=single"
	}
	args := []string{
		"-accel", accel, "-nodefaults", "-display", "none", "-monitor", "none",
		"-serial", "stdio", "-no-reboot",
		"-m", strconv.Itoa(cfg.MemoryMB), "-smp", smp, "-cpu", cfg.CPU,
	}
	if cfg.Firmware != "" {
		args = append(args, "-bios", cfg.Firmware)
	}
	if cfg.Kernel != "" {
		// THAW_VMTEST_APPEND adds kernel parameters to every VM booted with
		// -kernel, for a look at a run (ignore_loglevel no_console_suspend).
		args = append(args, "-kernel", cfg.Kernel, "-append", strings.TrimSpace("console=ttyS0 panic=-1 "+cfg.Append+" "+os.Getenv("THAW_VMTEST_APPEND")))
	}
	if cfg.Initrd != "" {
		args = append(args, "-initrd", cfg.Initrd)
	}
	for i, d := range cfg.Disks {
		f, ifc := d.Format, d.If
		if f == "" {
			f = "raw"
		}
		if ifc == "" {
			ifc = "virtio"
		}
		if d.Addr != "" && ifc == "virtio" {
			args = append(args, "-drive", fmt.Sprintf("file=%s,format=%s,if=none,cache=unsafe,id=disk%d", d.Path, f, i),
				"-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,addr=%s", i, d.Addr))
			continue
		}
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=%s,if=%s,cache=unsafe,index=%d", d.Path, f, ifc, i))
	}
	if cfg.NIC != "" {
		nic := "user,model=" + cfg.NIC
		for _, f := range cfg.HostFwd {
			nic += ",hostfwd=" + f
		}
		args = append(args, "-nic", nic)
	} else {
		args = append(args, "-nic", "none")
	}
	ctlPath := ""
	if cfg.Control {
		ctlPath = filepath.Join(cfg.LogDir, cfg.Name+".ctl")
		os.Remove(ctlPath)
		args = append(args, "-chardev", "socket,id=ctl,path="+ctlPath+",server=on,wait=off", "-serial", "chardev:ctl")
	}
	monPath := ""
	if cfg.VGA {
		monPath = filepath.Join(cfg.LogDir, cfg.Name+".mon")
		os.Remove(monPath)
		// The card at a high slot: the other devices keep their places.
		args = append(args, "-device", "VGA,addr=0x1e")
		args[slices.Index(args, "-monitor")+1] = "unix:" + monPath + ",server=on,wait=off"
	}
	args = append(args, cfg.Extra...)
	ctx, cancel := context.WithCancel(context.Background())
	argv := append(append(slices.Clone(cfg.Wrap), "qemu-system-x86_64"), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	vm := &VM{cfg: cfg, cmd: cmd, done: make(chan struct{}), cancel: cancel, ctlPath: ctlPath, monPath: monPath}
	vm.deadline = time.AfterFunc(cfg.Timeout, func() {
		vm.mu.Lock()
		vm.timedOut = true
		vm.mu.Unlock()
		cancel()
	})
	vm.cond = sync.NewCond(&vm.mu)
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		cancel()
		return nil, err
	}
	vm.LogPath = filepath.Join(cfg.LogDir, cfg.Name+".console.log")
	logf, err := os.Create(vm.LogPath)
	if err != nil {
		cancel()
		return nil, err
	}
	fmt.Fprintf(logf, "# qemu-system-x86_64 %s\n", strings.Join(args, " "))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	cmd.Stdin = nil
	if cfg.Input {
		if vm.input, err = cmd.StdinPipe(); err != nil {
			cancel()
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		cancel()
		logf.Close()
		return nil, fmt.Errorf("harness: start qemu (install qemu-system-x86): %w", err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			if n > 0 {
				logf.Write(buf[:n])
				vm.mu.Lock()
				vm.console.Write(buf[:n])
				vm.cond.Broadcast()
				vm.mu.Unlock()
			}
			if err != nil {
				break
			}
		}
		werr := cmd.Wait()
		logf.Close()
		vm.deadline.Stop()
		vm.mu.Lock()
		if vm.timedOut {
			werr = fmt.Errorf("harness: %s: killed after its timeout", cfg.Name)
		}
		vm.exitErr = werr
		close(vm.done)
		vm.cond.Broadcast()
		vm.mu.Unlock()
	}()
	return vm, nil
}

// SetTimeout moves the VM's hard deadline to d from now.
func (vm *VM) SetTimeout(d time.Duration) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.deadline != nil {
		vm.deadline.Reset(d)
	}
}

// Console returns everything the serial console printed so far.
func (vm *VM) Console() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.console.String()
}

func (vm *VM) exited() bool {
	select {
	case <-vm.done:
		return true
	default:
		return false
	}
}

// WaitFor waits until the console output after offset from matches re and
// returns the submatches and the offset just past the match. It fails when
// the VM exits or timeout passes first.
func (vm *VM) WaitFor(re *regexp.Regexp, from int, timeout time.Duration) ([]string, int, error) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		vm.mu.Lock()
		vm.cond.Broadcast()
		vm.mu.Unlock()
	})
	defer timer.Stop()
	vm.mu.Lock()
	defer vm.mu.Unlock()
	for {
		s := vm.console.String()
		if from > len(s) {
			from = len(s)
		}
		if loc := re.FindStringSubmatchIndex(s[from:]); loc != nil {
			var m []string
			for i := 0; i < len(loc); i += 2 {
				if loc[i] < 0 {
					m = append(m, "")
				} else {
					m = append(m, s[from+loc[i]:from+loc[i+1]])
				}
			}
			return m, from + loc[1], nil
		}
		if vm.exited() {
			return nil, from, fmt.Errorf("harness: %s exited (%v) before printing %q", vm.cfg.Name, vm.exitErr, re)
		}
		if time.Now().After(deadline) {
			return nil, from, fmt.Errorf("harness: %s printed no %q within %v", vm.cfg.Name, re, timeout)
		}
		vm.cond.Wait()
	}
}

// Wait waits for QEMU to exit on its own (the guest powered off) within timeout.
func (vm *VM) Wait(timeout time.Duration) error {
	select {
	case <-vm.done:
		return vm.exitErr
	case <-time.After(timeout):
		return fmt.Errorf("harness: %s still running after %v", vm.cfg.Name, timeout)
	}
}

// Kill stops QEMU if it still runs.
func (vm *VM) Kill() {
	if vm.ctl != nil {
		vm.ctl.Close()
	}
	vm.cancel()
	<-vm.done
}

// Tail returns the last n lines of the console, for failure messages.
func (vm *VM) Tail(n int) string {
	lines := strings.Split(vm.Console(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CopyConsole writes the whole console log to w.
func (vm *VM) CopyConsole(w io.Writer) {
	io.WriteString(w, vm.Console())
}

var ctlDoneRE = regexp.MustCompile(`CTL-DONE (\d+)\r?\n`)

// Run sends a shell command line over the control port and returns its
// output and exit status. It waits for the channel to answer first.
func (vm *VM) Run(cmdline string, timeout time.Duration) (string, int, error) {
	if vm.ctlPath == "" {
		return "", -1, fmt.Errorf("harness: %s has no control port", vm.cfg.Name)
	}
	deadline := time.Now().Add(timeout)
	if vm.ctl == nil {
		for {
			c, err := net.Dial("unix", vm.ctlPath)
			if err == nil {
				vm.ctl = c
				break
			}
			if vm.exited() || time.Now().After(deadline) {
				return "", -1, fmt.Errorf("harness: %s: control port: %w", vm.cfg.Name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// Ping until the guest's channel answers this ping: a slow guest
		// may answer an earlier one late, and that answer is skipped.
	ping:
		for n := 1; ; n++ {
			token := fmt.Sprintf("CTL-PING-%d", n)
			wait := time.Now().Add(3 * time.Second)
			vm.ctl.SetDeadline(wait)
			if _, err := vm.ctl.Write([]byte("echo " + token + "\n")); err != nil {
				return "", -1, err
			}
			for {
				out, _, err := vm.readCtl(wait)
				if err != nil {
					break
				}
				if strings.Contains(out, token) {
					break ping
				}
			}
			if vm.exited() || time.Now().After(deadline) {
				return "", -1, fmt.Errorf("harness: %s: the control channel did not answer within %v", vm.cfg.Name, timeout)
			}
		}
	}
	vm.ctl.SetDeadline(deadline)
	if _, err := vm.ctl.Write([]byte(cmdline + "\n")); err != nil {
		return "", -1, fmt.Errorf("harness: %s: send %q: %w", vm.cfg.Name, cmdline, err)
	}
	out, status, err := vm.readCtl(deadline)
	if err != nil {
		return out, status, fmt.Errorf("harness: %s: %q: %w", vm.cfg.Name, cmdline, err)
	}
	return out, status, nil
}

func (vm *VM) readCtl(deadline time.Time) (string, int, error) {
	buf := make([]byte, 4096)
	for {
		if m := ctlDoneRE.FindSubmatchIndex(vm.ctlBuf); m != nil {
			out := string(vm.ctlBuf[:m[0]])
			status, _ := strconv.Atoi(string(vm.ctlBuf[m[2]:m[3]]))
			vm.ctlBuf = append([]byte(nil), vm.ctlBuf[m[1]:]...)
			return out, status, nil
		}
		vm.ctl.SetReadDeadline(deadline)
		n, err := vm.ctl.Read(buf)
		vm.ctlBuf = append(vm.ctlBuf, buf[:n]...)
		if err != nil {
			return string(vm.ctlBuf), -1, err
		}
	}
}
