/* SPDX-License-Identifier: GPL-2.0 */
/*
 * klp-cc's helpers for livepatch source patches, under the names of
 * upstream's <linux/livepatch_helpers.h> (Linux 6.19+), for kernels that
 * have none. `klp-link patch` puts this file into the source tree while the
 * patched build runs, only where the tree has no header of that name, and
 * removes it afterwards.
 *
 * Callbacks: KLP_PRE_PATCH_CALLBACK(fn) and its three siblings make fn the
 * pre_patch (post_patch, pre_unpatch, post_unpatch) callback of the
 * klp_object of the object being patched (vmlinux, or the module this file
 * is compiled into). The macro leaves a pointer named
 * __klp_<kind>_callback_<object> in .discard.klp_callback_ptrs, as
 * upstream's does; klp-link carries it into the livepatch and calls fn
 * through it from the klp_object. fn must be static and new in the patch.
 *
 * Shadow variables: the kernel's own klp_shadow_alloc(), klp_shadow_get(),
 * klp_shadow_get_or_alloc(), klp_shadow_free() and klp_shadow_free_all()
 * (<linux/livepatch.h>, included here), on every supported kernel.
 *
 * System calls: KLP_SYSCALL_DEFINE0..6 define a system call as
 * SYSCALL_DEFINE0..6 do, without the tracing metadata (static data a live
 * patch cannot change), so that the patched syscall is only its functions.
 */
#ifndef _LINUX_LIVEPATCH_HELPERS_H
#define _LINUX_LIVEPATCH_HELPERS_H

#include <linux/compiler.h>
#include <linux/livepatch.h>
#include <linux/syscalls.h>

#ifdef MODULE
#define KLP_OBJNAME __KBUILD_MODNAME
#else
#define KLP_OBJNAME vmlinux
#endif

#define KLP_CALLBACK_PTRS ".discard.klp_callback_ptrs"

typedef int (*__klp_cc_pre_patch_t)(struct klp_object *obj);
typedef void (*__klp_cc_post_patch_t)(struct klp_object *obj);
typedef void (*__klp_cc_pre_unpatch_t)(struct klp_object *obj);
typedef void (*__klp_cc_post_unpatch_t)(struct klp_object *obj);

#define __KLP_CALLBACK(kind, func)						\
	__PASTE(__PASTE(__klp_cc_, kind), _t) __used __section(KLP_CALLBACK_PTRS)	\
		__PASTE(__PASTE(__klp_, kind), __PASTE(_callback_, KLP_OBJNAME)) = func

#define KLP_PRE_PATCH_CALLBACK(func)	__KLP_CALLBACK(pre_patch, func)
#define KLP_POST_PATCH_CALLBACK(func)	__KLP_CALLBACK(post_patch, func)
#define KLP_PRE_UNPATCH_CALLBACK(func)	__KLP_CALLBACK(pre_unpatch, func)
#define KLP_POST_UNPATCH_CALLBACK(func)	__KLP_CALLBACK(post_unpatch, func)

/* A static call whose key lives in a module, made as an indirect call. */
#define KLP_STATIC_CALL(name)							\
	((typeof(STATIC_CALL_TRAMP(name)) *)(STATIC_CALL_KEY(name).func))

#ifndef CONFIG_X86_64
#error "klp-cc's KLP_SYSCALL_DEFINE* support x86-64 only"
#endif
/* The architecture's wrapper (arch/x86/include/asm/syscall_wrapper.h) with
 * SYSCALL_DEFINEx's SYSCALL_METADATA left out. */
#define KLP_SYSCALL_DEFINEx(x, sname, ...) __SYSCALL_DEFINEx(x, sname, __VA_ARGS__)
#define KLP_SYSCALL_DEFINE0(sname) SYSCALL_DEFINE0(sname)
#define KLP_SYSCALL_DEFINE1(name, ...) KLP_SYSCALL_DEFINEx(1, _##name, __VA_ARGS__)
#define KLP_SYSCALL_DEFINE2(name, ...) KLP_SYSCALL_DEFINEx(2, _##name, __VA_ARGS__)
#define KLP_SYSCALL_DEFINE3(name, ...) KLP_SYSCALL_DEFINEx(3, _##name, __VA_ARGS__)
#define KLP_SYSCALL_DEFINE4(name, ...) KLP_SYSCALL_DEFINEx(4, _##name, __VA_ARGS__)
#define KLP_SYSCALL_DEFINE5(name, ...) KLP_SYSCALL_DEFINEx(5, _##name, __VA_ARGS__)
#define KLP_SYSCALL_DEFINE6(name, ...) KLP_SYSCALL_DEFINEx(6, _##name, __VA_ARGS__)

#endif /* _LINUX_LIVEPATCH_HELPERS_H */
