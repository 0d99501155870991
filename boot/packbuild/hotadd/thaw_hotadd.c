// SPDX-License-Identifier: GPL-2.0
/*
 * thaw_hotadd: hands a resumed kernel the RAM of its new machine that the
 * source's memory map did not have.
 *
 * A server resumed on a machine with more RAM keeps the source's memory
 * map: the rest is hidden from it. This module, loaded by the resumed
 * capture process before it rescans PCI, first moves the start of each
 * PCI root window named in windows up (the source's windows began where
 * the source's RAM ended, which is RAM here; a window with a device below
 * its new start is left alone and the module fails), then adds each range
 * of ranges to the kernel's memory, rounded inward to memory blocks. The
 * capture process onlines the new blocks.
 *
 * With cpus=1 it also enumerates the ACPI processor objects that are
 * present here but were not on the source: the kernel hot-adds each one
 * that its possible-CPU set has room for (acpi_processor_hotadd_init), and
 * the capture process brings them online. The namespace is the source's;
 * its _STA methods read this machine's CPU hotplug registers (QEMU's), so
 * a CPU listed as present-but-disabled there and present here is found.
 * Finding none is not an error: added_cpus says how many came.
 *
 * ranges:  "START-END[,START-END...]", hexadecimal, END exclusive.
 * windows: "OLDSTART-NEWSTART[,...]", hexadecimal: the root window that
 *          starts at OLDSTART starts at NEWSTART (its end stays).
 */
#include <linux/acpi.h>
#include <linux/cpu.h>
#include <linux/ioport.h>
#include <linux/kernel.h>
#include <linux/memory.h>
#include <linux/memory_hotplug.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>

static char *ranges;
module_param(ranges, charp, 0444);
MODULE_PARM_DESC(ranges, "RAM to add: START-END[,...] in hexadecimal, END exclusive");

static char *windows;
module_param(windows, charp, 0444);
MODULE_PARM_DESC(windows, "PCI root windows to move up: OLDSTART-NEWSTART[,...] in hexadecimal");

static bool cpus;
module_param(cpus, bool, 0444);
MODULE_PARM_DESC(cpus, "hot-add the ACPI processors present here that the kernel has not enumerated");

static unsigned int added_cpus;
module_param(added_cpus, uint, 0444);
MODULE_PARM_DESC(added_cpus, "CPUs hot-added (read-only)");

static unsigned long long added;
module_param(added, ullong, 0444);
MODULE_PARM_DESC(added, "bytes of RAM added (read-only)");

static int __init move_window(u64 from, u64 to)
{
	struct resource *r;
	int err;

	for (r = iomem_resource.child; r; r = r->sibling) {
		if (!r->name || strncmp(r->name, "PCI Bus", 7) != 0 || r->start != from)
			continue;
		if (to > r->end) {
			pr_err("thaw_hotadd: %s %pR cannot start at %#llx: past its end\n", r->name, r, to);
			return -EINVAL;
		}
		pr_info("thaw_hotadd: %s %pR starts at %#llx\n", r->name, r, to);
		err = adjust_resource(r, to, r->end - to + 1);
		if (err)
			pr_err("thaw_hotadd: cannot move %s %pR: %d (a device below %#llx)\n", r->name, r, err, to);
		return err;
	}
	pr_err("thaw_hotadd: no PCI root window starts at %#llx\n", from);
	return -ENOENT;
}

/* each calls fn on each "A-B" pair of list, hexadecimal, A < B unless any. */
static int __init each(const char *list, bool any, int (*fn)(u64, u64))
{
	char *buf, *p, *tok;
	int err = 0;

	if (!list)
		return 0;
	buf = kstrdup(list, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	p = buf;
	while ((tok = strsep(&p, ",")) != NULL && !err) {
		char *dash = strchr(tok, '-');
		u64 a, b;

		if (!*tok)
			continue;
		if (!dash) {
			err = -EINVAL;
			break;
		}
		*dash = 0;
		if (kstrtoull(tok, 16, &a) || kstrtoull(dash + 1, 16, &b) || (!any && b <= a)) {
			err = -EINVAL;
			break;
		}
		err = fn(a, b);
	}
	kfree(buf);
	if (err == -EINVAL)
		pr_err("thaw_hotadd: %s: want A-B,... in hexadecimal\n", list);
	return err;
}

static acpi_status __init scan_processor(acpi_handle handle, u32 level, void *ctx, void **ret)
{
	struct acpi_device *adev = acpi_fetch_acpi_dev(handle);
	unsigned int before = num_present_cpus();

	if (adev && adev->handler)
		return AE_OK; /* enumerated already */
	acpi_bus_scan(handle);
	if (num_present_cpus() > before) {
		added_cpus += num_present_cpus() - before;
		pr_info("thaw_hotadd: %s: CPU present (%u of %u possible)\n",
			adev ? dev_name(&adev->dev) : "processor", num_present_cpus(), num_possible_cpus());
	}
	return AE_OK;
}

static acpi_status __init scan_device(acpi_handle handle, u32 level, void *ctx, void **ret)
{
	return scan_processor(handle, level, ctx, ret);
}

/* add_cpus enumerates the processor objects (both kinds the ACPI spec has). */
static void __init add_cpus(void)
{
	if (acpi_disabled) {
		pr_info("thaw_hotadd: ACPI is off: no CPUs added\n");
		return;
	}
	if (num_present_cpus() >= num_possible_cpus()) {
		pr_info("thaw_hotadd: all %u possible CPUs are present\n", num_possible_cpus());
		return;
	}
	acpi_scan_lock_acquire();
	acpi_walk_namespace(ACPI_TYPE_PROCESSOR, ACPI_ROOT_OBJECT, ACPI_UINT32_MAX, scan_processor, NULL, NULL, NULL);
	acpi_get_devices("ACPI0007", scan_device, NULL, NULL);
	acpi_scan_lock_release();
	pr_info("thaw_hotadd: %u CPU(s) added; %u of %u possible present\n", added_cpus, num_present_cpus(), num_possible_cpus());
}

static int __init thaw_add_range(u64 start, u64 end)
{
	u64 bs = memory_block_size_bytes();
	u64 s = ALIGN(start, bs), e = ALIGN_DOWN(end, bs);
	int nid, err;

	if (e <= s) {
		pr_info("thaw_hotadd: %#llx-%#llx holds no whole memory block of %llu MiB\n", start, end - 1, bs >> 20);
		return 0;
	}
	nid = memory_add_physaddr_to_nid(s);
	err = add_memory(nid, s, e - s, MHP_NONE);
	if (err) {
		pr_err("thaw_hotadd: add_memory %#llx-%#llx: %d\n", s, e - 1, err);
		return err;
	}
	added += e - s;
	pr_info("thaw_hotadd: added %#llx-%#llx (%llu MiB, node %d)\n", s, e - 1, (e - s) >> 20, nid);
	return 0;
}

static int __init thaw_hotadd_init(void)
{
	int err;

	err = each(windows, true, move_window);
	if (err)
		return err;
	err = each(ranges, false, thaw_add_range);
	if (err)
		return err;
	if (cpus)
		add_cpus();
	return 0;
}

module_init(thaw_hotadd_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("thaw: add the new machine's RAM and CPUs to a resumed kernel");
