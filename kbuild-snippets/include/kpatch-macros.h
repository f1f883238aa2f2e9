/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kpatch's patch-author macros for klp-cc, so that kpatch patches build
 * unchanged (`#include "kpatch-macros.h"`). `klp-link patch` puts this file
 * at the top of the source tree's include/ while the patched build runs.
 *
 * - KPATCH_PRE_PATCH_CALLBACK(fn) ... KPATCH_POST_UNPATCH_CALLBACK(fn):
 *   the klp_object's callbacks, as KLP_*_CALLBACK of
 *   <linux/livepatch_helpers.h>. fn takes a patch_object *, which is
 *   struct klp_object here, as in kpatch's livepatch mode.
 * - KPATCH_PRINTK(fmt, ...): printk.
 * - KPATCH_IGNORE_FUNCTION(fn), KPATCH_IGNORE_SECTION(name): kpatch leaves
 *   such changed code out of the module. klp-link never leaves a changed
 *   function out (a missed change is the worst a live patch can have): the
 *   macros record what they name in .discard.klp_cc_ignore and klp-link
 *   refuses a patch that uses them, naming them, so that the author
 *   reviews those functions and drops the macro.
 * - KPATCH_FORCE_UNSAFE, KPATCH_SHADOW_*: not provided (kpatch's own
 *   shadow API is gone; use klp_shadow_*()).
 */
#ifndef _KLP_CC_KPATCH_MACROS_H
#define _KLP_CC_KPATCH_MACROS_H

#include <linux/compiler.h>
#include <linux/livepatch_helpers.h>
#include <linux/printk.h>

typedef struct klp_object patch_object;

#define KPATCH_PRE_PATCH_CALLBACK(fn)	KLP_PRE_PATCH_CALLBACK(fn)
#define KPATCH_POST_PATCH_CALLBACK(fn)	KLP_POST_PATCH_CALLBACK(fn)
#define KPATCH_PRE_UNPATCH_CALLBACK(fn)	KLP_PRE_UNPATCH_CALLBACK(fn)
#define KPATCH_POST_UNPATCH_CALLBACK(fn)	KLP_POST_UNPATCH_CALLBACK(fn)

#define KPATCH_PRINTK(fmt, ...) printk(fmt, ##__VA_ARGS__)

#define KPATCH_IGNORE_FUNCTION(_fn)						\
	static void *__used __section(".discard.klp_cc_ignore")		\
		__PASTE(__klp_cc_ignore_function_, _fn) = (void *)(_fn)
#define KPATCH_IGNORE_SECTION(_sec)						\
	static const char __used __section(".discard.klp_cc_ignore")	\
		__UNIQUE_ID(klp_cc_ignore_section_)[] = _sec

#endif /* _KLP_CC_KPATCH_MACROS_H */
