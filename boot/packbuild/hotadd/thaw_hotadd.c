// SPDX-License-Identifier: GPL-2.0
/*
 * thaw_hotadd: hands a resumed kernel the RAM of its new machine that the
 * source's memory map did not have.
 *
 * A server resumed on a machine with more RAM keeps the source's memory
 * map: the rest is hidden from it. This module, loaded by the resumed
 * capture process before it rescans PCI, first moves the start of each
 * PCI root window that reaches below window_floor up to it (the source's
 * windows began where the source's RAM ended, which is RAM here; a window
 * with a device below the floor is left alone and the module fails), then
 * adds each range of ranges to the kernel's memory, rounded inward to
 * memory blocks. The capture process onlines the new blocks.
 *
 * ranges: "START-END[,START-END...]", hexadecimal, END exclusive.
 */
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

static unsigned long long window_floor;
module_param(window_floor, ullong, 0444);
MODULE_PARM_DESC(window_floor, "PCI root windows starting below this address start here");

static unsigned long long added;
module_param(added, ullong, 0444);
MODULE_PARM_DESC(added, "bytes of RAM added (read-only)");

static int __init move_windows(void)
{
	struct resource *r;
	int err;

	for (r = iomem_resource.child; r; r = r->sibling) {
		if (!r->name || strncmp(r->name, "PCI Bus", 7) != 0)
			continue;
		if (r->start >= window_floor || r->end < window_floor)
			continue;
		pr_info("thaw_hotadd: %s %pR starts at %#llx\n", r->name, r, window_floor);
		err = adjust_resource(r, window_floor, r->end - window_floor + 1);
		if (err) {
			pr_err("thaw_hotadd: cannot move %s %pR: %d (a device below %#llx)\n", r->name, r, err, window_floor);
			return err;
		}
	}
	return 0;
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
	char *buf, *p, *tok;
	int err = 0;

	if (window_floor) {
		err = move_windows();
		if (err)
			return err;
	}
	if (!ranges)
		return 0;
	buf = kstrdup(ranges, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	p = buf;
	while ((tok = strsep(&p, ",")) != NULL && !err) {
		char *dash = strchr(tok, '-');
		u64 start, end;

		if (!*tok)
			continue;
		if (!dash) {
			err = -EINVAL;
			break;
		}
		*dash = 0;
		if (kstrtoull(tok, 16, &start) || kstrtoull(dash + 1, 16, &end) || end <= start) {
			err = -EINVAL;
			break;
		}
		err = thaw_add_range(start, end);
	}
	kfree(buf);
	if (err == -EINVAL)
		pr_err("thaw_hotadd: ranges=%s: want START-END,... in hexadecimal\n", ranges);
	return err;
}

module_init(thaw_hotadd_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("thaw: add the new machine's RAM to a resumed kernel");
