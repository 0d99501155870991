// SPDX-License-Identifier: GPL-2.0
/*
 * thaw_redirect: lets a resumed kernel keep a filesystem or swap on a plain
 * partition of a disk that moved to another controller.
 *
 * The resumed kernel still holds the source's disk (vda on virtio-blk, say):
 * its controller is gone, the restore of its driver failed, and its request
 * queue stays quiesced, so every bio sent to it waits for ever. The same
 * blocks are now on another disk (sda on the new controller), with the same
 * partition table. A mounted root on vda1 names vda1's block device, and no
 * device-mapper table stands between them that could be re-pointed.
 *
 * This module gives the stale disk's gendisk a copy of its
 * block_device_operations with a submit_bio of its own, which makes the
 * disk bio-based (on 6.10 and later also through each of its block
 * devices' BD_HAS_SUBMIT_BIO flag). The block layer has already turned a
 * partition's sector into the disk's sector (blk_partition_remap) when it
 * calls submit_bio, so each bio is sent on unchanged to the new whole disk
 * (bio_set_dev, submit_bio_noacct), as dm-linear would.
 *
 * It works in two steps, as a dm device suspended without flushing does:
 *
 *   hold=MAJ:MIN[,...]  (at load) the stale whole disks. From then on their
 *                       bios are held in memory. The resumed capture process
 *                       loads the module before kernel threads thaw, so no
 *                       bio reaches the quiesced queue.
 *   to=OLD=NEW[,...]    (written to /sys/module/thaw_redirect/parameters/to
 *                       once the new disk is found) the new whole disk of
 *                       each held one. It is opened exclusively (no one can
 *                       mount or swap on it beside the old one), checked to
 *                       be as large, with a logical block no larger, and
 *                       the held bios are sent to it, then every later one.
 *
 * held and sent count the bios. There is no module_exit: the disks' fops
 * point here for as long as they live, so the module never unloads.
 */
#include <linux/atomic.h>
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/kdev_t.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/version.h>
#include <linux/xarray.h>

#define MAX_DISKS 8

struct redirect {
	dev_t old;
	struct gendisk *disk;
	struct block_device_operations fops; /* the disk's own, with submit_bio */
	spinlock_t lock;
	struct bio_list held;
	struct block_device *to; /* NULL: held */
	dev_t new;
};

static struct redirect redirects[MAX_DISKS];
static int count;

static char *hold;
module_param(hold, charp, 0444);
MODULE_PARM_DESC(hold, "stale whole disks whose bios are held: MAJ:MIN[,...]");

/* Counted across disks, each of which has its own lock. */
static atomic_long_t held, sent;

static int get_count(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%ld\n", atomic_long_read((atomic_long_t *)kp->arg));
}

static int set_count(const char *val, const struct kernel_param *kp)
{
	return -EPERM;
}

static const struct kernel_param_ops count_ops = {
	.set = set_count,
	.get = get_count,
};
module_param_cb(held, &count_ops, &held, 0444);
MODULE_PARM_DESC(held, "bios held until the new disk was given (read-only)");
module_param_cb(sent, &count_ops, &sent, 0444);
MODULE_PARM_DESC(sent, "bios sent on to a new disk (read-only)");

static struct redirect *find(struct gendisk *disk)
{
	int i, n = READ_ONCE(count);

	for (i = 0; i < n; i++)
		if (redirects[i].disk == disk)
			return &redirects[i];
	return NULL;
}

static void thaw_submit_bio(struct bio *bio)
{
	struct redirect *r = find(bio->bi_bdev->bd_disk);
	struct block_device *to;
	unsigned long flags;

	if (!r) {
		bio_io_error(bio);
		return;
	}
	spin_lock_irqsave(&r->lock, flags);
	to = r->to;
	if (!to) {
		bio_list_add(&r->held, bio);
		spin_unlock_irqrestore(&r->lock, flags);
		atomic_long_inc(&held);
		return;
	}
	spin_unlock_irqrestore(&r->lock, flags);
	atomic_long_inc(&sent);
	/* bi_sector is the whole disk's: blk_partition_remap ran. */
	bio_set_dev(bio, to);
	submit_bio_noacct(bio);
}

/*
 * open_dev opens a whole disk for as long as the kernel runs; exclusive
 * claims it for the module. *handle is what close_dev takes.
 */
static struct block_device *open_dev(dev_t dev, bool exclusive, void **handle)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 9, 0)
	struct file *f;

	f = bdev_file_open_by_dev(dev, exclusive ? BLK_OPEN_READ | BLK_OPEN_WRITE : BLK_OPEN_READ,
				  exclusive ? redirects : NULL, NULL);
	if (IS_ERR(f))
		return ERR_CAST(f);
	*handle = f;
	return file_bdev(f);
#else
	struct block_device *bdev;

	bdev = blkdev_get_by_dev(dev, exclusive ? FMODE_READ | FMODE_WRITE | FMODE_EXCL : FMODE_READ,
				 exclusive ? redirects : NULL);
	*handle = bdev;
	return bdev;
#endif
}

static void close_dev(void *handle, bool exclusive)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 9, 0)
	fput(handle);
#else
	blkdev_put(handle, exclusive ? FMODE_READ | FMODE_WRITE | FMODE_EXCL : FMODE_READ);
#endif
}

/* each calls fn on each comma-separated item of list. */
static int each(const char *list, int (*fn)(char *))
{
	char *buf, *p, *item;
	int err = 0;

	buf = kstrdup(list, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	p = strim(buf);
	while (!err && (item = strsep(&p, ",")) != NULL) {
		item = strim(item);
		if (*item)
			err = fn(item);
	}
	kfree(buf);
	return err;
}

static int parse_dev(const char *s, dev_t *dev)
{
	unsigned int maj, min;
	char tail;

	if (sscanf(s, "%u:%u%c", &maj, &min, &tail) != 2 || maj > MAJOR(~0U) || min > MINOR(~0U))
		return -EINVAL;
	*dev = MKDEV(maj, min);
	return 0;
}

/* the stale disks found by hold_one, installed once all are */
static void *handles[MAX_DISKS];
static int found;

static int hold_one(char *item)
{
	struct block_device *bdev;
	struct redirect *r;
	dev_t dev;
	int i;

	if (parse_dev(item, &dev)) {
		pr_err("thaw_redirect: hold: \"%s\" is not MAJ:MIN\n", item);
		return -EINVAL;
	}
	for (i = 0; i < found; i++)
		if (redirects[i].old == dev)
			return 0;
	if (found == MAX_DISKS) {
		pr_err("thaw_redirect: hold: more than %d disks\n", MAX_DISKS);
		return -E2BIG;
	}
	bdev = open_dev(dev, false, &handles[found]);
	if (IS_ERR(bdev)) {
		pr_err("thaw_redirect: hold: open %u:%u: %ld\n", MAJOR(dev), MINOR(dev), PTR_ERR(bdev));
		return PTR_ERR(bdev);
	}
	r = &redirects[found++];
	r->old = dev;
	r->disk = bdev->bd_disk;
	if (bdev_is_partition(bdev)) {
		pr_err("thaw_redirect: hold: %pg is a partition: give its whole disk\n", bdev);
		return -EINVAL;
	}
	if (r->disk->fops->submit_bio) {
		pr_err("thaw_redirect: hold: %pg is bio-based already (device-mapper, md): re-point its table instead\n", bdev);
		return -EINVAL;
	}
	return 0;
}

/* install makes r's disk bio-based, its bios going to thaw_submit_bio. */
static void install(struct redirect *r)
{
#ifdef BD_HAS_SUBMIT_BIO
	struct block_device *part;
	unsigned long idx;
#endif

	r->fops = *r->disk->fops;
	r->fops.submit_bio = thaw_submit_bio;
	spin_lock_init(&r->lock);
	bio_list_init(&r->held);
	smp_store_release(&count, count + 1);
	/* The fops first: the flag sends bios to fops->submit_bio. */
	WRITE_ONCE(r->disk->fops, &r->fops);
#ifdef BD_HAS_SUBMIT_BIO
	bdev_set_flag(r->disk->part0, BD_HAS_SUBMIT_BIO);
	xa_for_each(&r->disk->part_tbl, idx, part)
		bdev_set_flag(part, BD_HAS_SUBMIT_BIO);
#endif
	pr_info("thaw_redirect: %s (%u:%u): its bios are held until its new place is given\n",
		r->disk->disk_name, MAJOR(r->old), MINOR(r->old));
}

static int to_one(char *item)
{
	char *eq = strchr(item, '=');
	struct block_device *bdev;
	struct bio_list list;
	struct redirect *r = NULL;
	struct bio *bio;
	unsigned long flags, n = 0;
	void *handle;
	dev_t old, new;
	int i, err = -EINVAL;

	if (!eq)
		return -EINVAL;
	*eq = 0;
	if (parse_dev(item, &old) || parse_dev(eq + 1, &new)) {
		pr_err("thaw_redirect: to: \"%s=%s\" is not OLD=NEW (MAJ:MIN=MAJ:MIN)\n", item, eq + 1);
		return -EINVAL;
	}
	for (i = 0; i < count; i++)
		if (redirects[i].old == old)
			r = &redirects[i];
	if (!r) {
		pr_err("thaw_redirect: to: %u:%u is not held\n", MAJOR(old), MINOR(old));
		return -ENOENT;
	}
	if (r->to) {
		pr_err("thaw_redirect: to: %u:%u goes to %u:%u already\n", MAJOR(old), MINOR(old), MAJOR(r->new), MINOR(r->new));
		return -EBUSY;
	}
	bdev = open_dev(new, true, &handle);
	if (IS_ERR(bdev)) {
		pr_err("thaw_redirect: to: open %u:%u exclusively: %ld\n", MAJOR(new), MINOR(new), PTR_ERR(bdev));
		return PTR_ERR(bdev);
	}
	if (bdev_is_partition(bdev) || bdev->bd_disk == r->disk) {
		pr_err("thaw_redirect: to: %pg is not another whole disk\n", bdev);
		goto fail;
	}
	if (bdev_nr_sectors(bdev) < get_capacity(r->disk)) {
		pr_err("thaw_redirect: to: %pg holds %llu sectors, %s held %llu\n", bdev,
		       (unsigned long long)bdev_nr_sectors(bdev), r->disk->disk_name, (unsigned long long)get_capacity(r->disk));
		err = -ENOSPC;
		goto fail;
	}
	if (bdev_logical_block_size(bdev) > queue_logical_block_size(r->disk->queue)) {
		pr_err("thaw_redirect: to: %pg has %u-byte logical blocks, %s had %u\n", bdev,
		       bdev_logical_block_size(bdev), r->disk->disk_name, queue_logical_block_size(r->disk->queue));
		goto fail;
	}
	spin_lock_irqsave(&r->lock, flags);
	r->new = new;
	r->to = bdev;
	list = r->held;
	bio_list_init(&r->held);
	spin_unlock_irqrestore(&r->lock, flags);
	while ((bio = bio_list_pop(&list)) != NULL) {
		bio_set_dev(bio, bdev);
		submit_bio_noacct(bio);
		n++;
	}
	atomic_long_add(n, &sent);
	pr_info("thaw_redirect: %s (%u:%u) → %pg (%u:%u): %lu held bio(s) sent\n", r->disk->disk_name,
		MAJOR(old), MINOR(old), bdev, MAJOR(new), MINOR(new), n);
	return 0;
fail:
	close_dev(handle, true);
	return err;
}

static bool ready;

static int set_to(const char *val, const struct kernel_param *kp)
{
	if (!READ_ONCE(ready)) {
		pr_err("thaw_redirect: to: write it to /sys/module/thaw_redirect/parameters/to after the module is loaded\n");
		return -EINVAL;
	}
	return each(val, to_one);
}

static int get_to(char *buf, const struct kernel_param *kp)
{
	int i, n = 0;

	for (i = 0; i < count; i++) {
		if (redirects[i].to)
			n += scnprintf(buf + n, PAGE_SIZE - n, "%s%u:%u=%u:%u", n ? "," : "",
				       MAJOR(redirects[i].old), MINOR(redirects[i].old),
				       MAJOR(redirects[i].new), MINOR(redirects[i].new));
	}
	n += scnprintf(buf + n, PAGE_SIZE - n, "\n");
	return n;
}

static const struct kernel_param_ops to_ops = {
	.set = set_to,
	.get = get_to,
};
module_param_cb(to, &to_ops, NULL, 0644);
MODULE_PARM_DESC(to, "new whole disk of each held one: OLD=NEW[,...] as MAJ:MIN, written after load");

static int __init thaw_redirect_init(void)
{
	int err, i;

	if (!hold || !*hold) {
		pr_err("thaw_redirect: give hold=MAJ:MIN[,...]\n");
		return -EINVAL;
	}
	/* Every disk found and checked before any is touched. */
	err = each(hold, hold_one);
	if (err) {
		while (found > 0)
			close_dev(handles[--found], false);
		return err;
	}
	for (i = 0; i < found; i++)
		install(&redirects[i]);
	WRITE_ONCE(ready, true);
	return 0;
}
module_init(thaw_redirect_init);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("thaw: sends a stale disk's bios to its new place");
