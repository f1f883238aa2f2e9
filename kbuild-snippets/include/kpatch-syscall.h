/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kpatch's KPATCH_SYSCALL_DEFINE0..6 for klp-cc: a system call defined as
 * SYSCALL_DEFINE0..6 define it, without the tracing metadata a live patch
 * cannot change (see KLP_SYSCALL_DEFINE* in <linux/livepatch_helpers.h>).
 */
#ifndef _KLP_CC_KPATCH_SYSCALL_H
#define _KLP_CC_KPATCH_SYSCALL_H

#include <linux/livepatch_helpers.h>

/* Upstream's header (6.19+) has no DEFINE0: a syscall without arguments
 * has no wrapper to leave its metadata out of. */
#ifndef KLP_SYSCALL_DEFINE0
#define KLP_SYSCALL_DEFINE0(sname) SYSCALL_DEFINE0(sname)
#endif

#define KPATCH_SYSCALL_DEFINE0(name)		KLP_SYSCALL_DEFINE0(name)
#define KPATCH_SYSCALL_DEFINE1(name, ...)	KLP_SYSCALL_DEFINE1(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE2(name, ...)	KLP_SYSCALL_DEFINE2(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE3(name, ...)	KLP_SYSCALL_DEFINE3(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE4(name, ...)	KLP_SYSCALL_DEFINE4(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE5(name, ...)	KLP_SYSCALL_DEFINE5(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE6(name, ...)	KLP_SYSCALL_DEFINE6(name, __VA_ARGS__)

#endif /* _KLP_CC_KPATCH_SYSCALL_H */
