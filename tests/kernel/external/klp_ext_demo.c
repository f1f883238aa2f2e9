// SPDX-License-Identifier: GPL-2.0
/*
 * An external module for tests/kernel/external-check.sh: built with
 * `make -C TREE M=DIR` against the kernel tree, then live-patched by
 * `klp-link patch TREE --external DIR greeting.patch`.
 *
 * /proc/klp_ext_demo shows a greeting and how often it was read.  The
 * read count is a static variable of this module and the greeting comes
 * from a static function, so a patched show function needs klp
 * relocations into this module: to its data and to a local symbol.
 */
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>

static unsigned long reads;

static noinline const char *greeting(void)
{
	return "hello from klp_ext_demo";
}

static int demo_show(struct seq_file *m, void *v)
{
	reads++;
	seq_printf(m, "%s (read %lu times)\n", greeting(), reads);
	return 0;
}

static int __init demo_init(void)
{
	if (!proc_create_single("klp_ext_demo", 0444, NULL, demo_show))
		return -ENOMEM;
	return 0;
}

static void __exit demo_exit(void)
{
	remove_proc_entry("klp_ext_demo", NULL);
}

module_init(demo_init);
module_exit(demo_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("external module for klp-cc's external-check");
