//! Line numbers in the code: the places where a function's bytes hold a
//! `__LINE__` and nothing else, so that a function whose only differences
//! are there can be told apart from one that changed (DESIGN §3).
//!
//! The function's checksum covers them as everything else; a second,
//! line-insensitive checksum leaves them out. A place counts only when it
//! is proven to hold a line number, since missing a real change is worse
//! than reporting a line shift:
//!
//! - a call site: `mov $imm32` into the line argument's register (`%esi`,
//!   `%edx` or `%ecx`) followed, in the same basic block, by a direct call
//!   (or tail jump) through a relocation to one of [`LINE_CALLEES`], which
//!   take `__LINE__` in that argument (`(file, line, ...)`, or ext4's
//!   `(sb, func, line, ...)`) and are only called by macros passing it.
//!   Nothing in between may write that register, branch, call, or be the
//!   target of a branch or of any relocation (a jump table, a `.cold` part
//!   jumping back, a table entry). An immediate passed explicitly to one of
//!   those callees cannot be told from a line number; only the patch's line
//!   map could.
//! - a `__bug_table` entry of x86 with `CONFIG_DEBUG_BUGVERBOSE`: in 6.1
//!   `{int bug_addr_disp; int file_disp; u16 line; u16 flags}`, 12 bytes
//!   with relocations at 0 and 4; from 6.19 (`HAVE_ARCH_BUG_FORMAT`) a
//!   `format_disp` comes second, 16 bytes with relocations at 0, 4 and 8.
//!   Other layouts stay fully covered.
//! - a dynamic-debug descriptor (`struct _ddebug` in `__dyndbg`): four
//!   pointers (modname, function, filename, format: 8-byte relocations at 0,
//!   8, 16 and 24), then a 32-bit word whose low 18 bits are `lineno`, the
//!   rest flags (and, from 6.2, the class id). The descriptor's own record
//!   gets the line-insensitive checksum; its function hashes it by name.
//!
//! Each proven site is also recorded with the file its line belongs to:
//! the string whose address the caller puts into the callee's file
//! argument (`lea .LC0(%rip), %rdi` in the same basic block), or the
//! entry's file field. A caller that keeps `__FILE__` in a callee-saved
//! register across a loop (`mov %r12, %rdi`) names no file at the site; it
//! is then one of the file names the function loads anywhere, and the site
//! records those. A callee that takes `__func__` instead names no file
//! either; klp-link adds the object's own source to what such a site may be.
//! With the patch at hand klp-link checks each changed line against the
//! patch's line map.
//!
//! What the line-insensitive checksum gets instead: every `mov $imm32`
//! into `%esi`, `%edx` or `%ecx` with the immediate zeroed and, once the
//! function's code is walked, for each of them in order either "line site"
//! or its immediate. So two functions with equal line-insensitive checksums
//! differ at most in the immediates of sites both have at the same places.

use object::elf;

use super::code::is_relocated;
use super::describe::{string_at, HashExt};
use super::record::{LineSite, SiteFile};
use super::tables::{Entry, Tables};
use crate::arch::{Field, Insn};
use crate::elf::{ElfIndex, Reloc, SectionIndex, SectionKind};

/// A kernel function that takes its caller's `__LINE__`: which integer
/// argument holds it, and which holds the caller's `__FILE__`, if one does
/// (the others take `__func__`, or nothing that names a file).
pub struct LineCallee {
    pub name: &'static str,
    pub line_arg: u8,
    pub file_arg: Option<u8>,
}

const fn callee(name: &'static str, line_arg: u8, file_arg: Option<u8>) -> LineCallee {
    LineCallee {
        name,
        line_arg,
        file_arg,
    }
}

/// Kernel functions (Linux 6.1 to 7.x) only ever called by macros that pass
/// their caller's `__LINE__`: `might_sleep()`, `cond_resched()` and the
/// lock variants, `might_fault()`, `cant_sleep()`, `cant_migrate()`,
/// `RCU_LOCKDEP_WARN()` and the generic `WARN()` (x86 puts its line into
/// `__bug_table` instead), `jbd2_debug()`; ext4's error, warning and
/// journal and directory checks and btrfs's error paths, which take
/// `__func__` and `__LINE__`; XFS's shutdown and assertions and gfs2's
/// consistency errors, which take `__FILE__` and `__LINE__` (the sites
/// filesystem fixes meet most). Each signature is the same on 6.1, 6.12
/// and 7.3; a callee whose line moved between versions to where another
/// version passes a real constant must not be listed (`xfs_errortag_test`).
pub const LINE_CALLEES: &[LineCallee] = &[
    callee("__might_sleep", 2, Some(1)),
    callee("__might_resched", 2, Some(1)),
    callee("__might_fault", 2, Some(1)),
    callee("__cant_sleep", 2, Some(1)),
    callee("__cant_migrate", 2, Some(1)),
    callee("lockdep_rcu_suspicious", 2, Some(1)),
    callee("warn_slowpath_fmt", 2, Some(1)),
    callee("__jbd2_debug", 4, Some(2)),
    callee("__ext4_grp_locked_error", 2, None),
    callee("__ext4_journal_get_write_access", 2, None),
    callee("__ext4_journal_get_create_access", 2, None),
    callee("__ext4_handle_dirty_metadata", 2, None),
    callee("__ext4_forget", 2, None),
    callee("__ext4_journal_stop", 2, None),
    // Linux 6.1's `(sb, line, type, ...)`; from 6.3 `(inode, sb, line,
    // type, ...)`. Only the second argument is safe in both: a pointer no
    // `mov $imm32` loads in the later layout, where the third would be
    // 6.1's `type`, a real constant. So its sites are proven on 6.1 only.
    callee("__ext4_journal_start_sb", 2, None),
    callee("__ext4_journal_start_reserved", 2, None),
    callee("__ext4_error", 3, None),
    callee("__ext4_error_inode", 3, None),
    callee("__ext4_error_file", 3, None),
    callee("__ext4_std_error", 3, None),
    callee("__ext4_warning", 3, None),
    callee("__ext4_warning_inode", 3, None),
    callee("__ext4_mark_inode_dirty", 4, None),
    callee("__ext4_check_dir_entry", 2, None),
    callee("ext4_check_blockref", 2, None),
    callee("xfs_do_force_shutdown", 4, Some(3)),
    callee("assfail", 4, Some(3)),
    callee("asswarn", 4, Some(3)),
    callee("gfs2_consist_i", 4, Some(3)),
    callee("gfs2_consist_inode_i", 4, Some(3)),
    callee("gfs2_consist_rgrpd_i", 4, Some(3)),
    callee("gfs2_io_error_i", 4, Some(3)),
    callee("__btrfs_handle_fs_error", 3, None),
    callee("__btrfs_abort_transaction", 3, None),
    callee("__btrfs_panic", 3, None),
];

/// What the line-insensitive checksum gets for a proven site, in place of
/// the immediate (which is at most 32 bits wide).
const SITE: u64 = u64::MAX;

/// A `mov $imm32` into an argument register, and the call to a line
/// callee it feeds, if any, with the address in the callee's file argument
/// at that call.
struct Candidate {
    mov: u64,
    imm: u64,
    call: Option<u64>,
    file: Option<FileLoad>,
}

/// Integer arguments 1 to 4, indexed by number (0 unused).
type PerArg<T> = [Option<T>; 5];

/// An instruction that put a relocated address into a register.
#[derive(Clone, Copy)]
struct FileLoad {
    ip: u64,
    end: u64,
    reloc: Reloc,
}

/// The line-number call sites of one contiguous piece of code, found while
/// it is walked once.
#[derive(Default)]
pub struct LineSites {
    candidates: Vec<Candidate>,
    /// Per argument register, the candidate whose constant it still holds
    /// in the same basic block.
    open: PerArg<usize>,
    /// Where resolved branches of this piece land.
    targets: Vec<u64>,
    /// Per argument register, the address loaded into it in this basic
    /// block, if it still holds it.
    held: PerArg<FileLoad>,
    /// Every relocated address the piece loads into a register.
    loads: Vec<FileLoad>,
}

impl LineSites {
    /// Looks at the next instruction before it is hashed. Returns the
    /// immediate's field when it may be a line number: the caller hashes it
    /// zeroed into the line-insensitive checksum.
    pub fn step(
        &mut self,
        index: &ElfIndex,
        insn: &Insn,
        relocs: &[Reloc],
        jump_label: bool,
    ) -> Option<Field> {
        if jump_label || !insn.valid {
            self.open = PerArg::default();
            self.held = PerArg::default();
            return None;
        }
        let resolved = insn
            .branch
            .filter(|b| !is_relocated(insn.ip, b.field, relocs));
        if let Some(b) = resolved {
            self.targets.push(b.target);
        }
        let held_before = self.held;
        let load = insn.address_load.and_then(|a| {
            let reloc = relocs
                .iter()
                .find(|r| is_relocated(insn.ip, a.field, std::slice::from_ref(r)))?;
            let load = FileLoad {
                ip: insn.ip,
                end: insn.end(),
                reloc: *reloc,
            };
            self.loads.push(load);
            Some((a.arg, load))
        });
        for n in 1..=4 {
            match load {
                Some((Some(arg), l)) if arg == n => self.held[usize::from(n)] = Some(l),
                _ if !insn.keeps_arg(n) => self.held[usize::from(n)] = None,
                _ => {}
            }
        }
        if insn.is_direct_call_or_jump() {
            if let Some(c) = line_callee(index, relocs) {
                if let Some(open) = self.open[usize::from(c.line_arg)] {
                    self.candidates[open].call = Some(insn.ip);
                    self.candidates[open].file =
                        c.file_arg.and_then(|f| held_before[usize::from(f)]);
                }
            }
        }
        let immediate = insn
            .arg_immediate
            .filter(|a| !is_relocated(insn.ip, a.field, relocs));
        for n in 2..=4 {
            if !insn.keeps_arg(n) {
                self.open[usize::from(n)] = None;
            }
        }
        let a = immediate?;
        self.open[usize::from(a.arg)] = Some(self.candidates.len());
        self.candidates.push(Candidate {
            mov: insn.ip,
            imm: a.value,
            call: None,
            file: None,
        });
        Some(a.field)
    }

    /// Once the piece (section `sec`) is walked: tells the line-insensitive
    /// checksum, for each candidate in order, whether it is a proven site
    /// or what its immediate was.
    pub fn finish(
        self,
        h: &mut impl HashExt,
        index: &ElfIndex,
        tables: &Tables,
        sec: SectionIndex,
    ) {
        let straight = |from: u64, call: u64| {
            !self.targets.iter().any(|&t| t > from && t <= call)
                && !tables.entered_between(index, sec, from, call)
        };
        let loaded = |f: &FileLoad| file_at(index, &f.reloc, (f.end - f.reloc.offset) as i64);
        let mut kept = None;
        for c in &self.candidates {
            match c.call.filter(|&call| straight(c.mov, call)) {
                Some(call) => {
                    let file = match c
                        .file
                        .filter(|f| straight(f.ip, call))
                        .and_then(|f| loaded(&f))
                    {
                        Some(name) => SiteFile::Known(name),
                        None => SiteFile::OneOf(
                            kept.get_or_insert_with(|| {
                                let mut names: Vec<String> = self
                                    .loads
                                    .iter()
                                    .filter_map(loaded)
                                    .filter(|n| n.contains('.'))
                                    .collect();
                                names.sort();
                                names.dedup();
                                names
                            })
                            .clone(),
                        ),
                    };
                    h.line_site(LineSite {
                        line: c.imm as u32,
                        file,
                    });
                    h.lines_only(SITE);
                }
                None => h.lines_only(c.imm),
            }
        }
    }
}

/// The file name a relocation points at, as a line site records it: a
/// string of a read-only section, valid UTF-8 that a manifest can list
/// ([`SiteFile::writable`]). `bias` is what
/// turns the relocation's addend into the offset in its target (a
/// PC-relative field in code is taken from the end of its instruction).
pub fn file_at(index: &ElfIndex, r: &Reloc, bias: i64) -> Option<String> {
    let s = &index.symbols[r.symbol];
    let section = &index.sections[s.section?];
    if !matches!(section.kind, SectionKind::Strings | SectionKind::ReadOnly) {
        return None;
    }
    let bias = if r.pc_relative { bias } else { 0 };
    let offset = s.value.wrapping_add(r.addend.wrapping_add(bias) as u64);
    if offset >= section.size {
        return None;
    }
    let name = std::str::from_utf8(string_at(section.data, offset, 1)).ok()?;
    SiteFile::writable(name).then(|| name.to_owned())
}

/// The global line callee the instruction's relocation names, if any (a
/// local function of that name would be someone else's).
fn line_callee(index: &ElfIndex, relocs: &[Reloc]) -> Option<&'static LineCallee> {
    relocs.iter().find_map(|r| {
        let s = &index.symbols[r.symbol];
        if s.binding == elf::STB_LOCAL.0 {
            return None;
        }
        LINE_CALLEES.iter().find(|c| c.name == s.name)
    })
}

/// Bits of a dynamic-debug descriptor's line word that hold `lineno`.
pub const DYNDBG_LINENO_BITS: u32 = (1 << 18) - 1;

/// The offset of the line word of the dynamic-debug descriptor that spans
/// `[start, end)` of section `sec` (see the module header), or `None` when
/// it is not laid out as one.
pub fn dyndbg_line(index: &ElfIndex, sec: SectionIndex, start: u64, end: u64) -> Option<u64> {
    let section = &index.sections[sec];
    if section.name != "__dyndbg" || end.saturating_sub(start) < 40 {
        return None;
    }
    let pointers: Vec<(u64, u8)> = index
        .relocs_in(sec, start, start + 32)
        .iter()
        .map(|r| (r.offset - start, r.width))
        .collect();
    (pointers == [(0, 8), (8, 8), (16, 8), (24, 8)]).then_some(start + 32)
}

/// The site an x86 `__bug_table` entry's line field (at `line`, see
/// [`bug_line`]) records: its file field comes just before it.
pub fn bug_site(index: &ElfIndex, e: &Entry, line: u64) -> LineSite {
    let data = index.sections[e.table].data;
    let value = super::describe::slice(data, line, line + 2);
    let file = index
        .relocs_in(e.table, line - 4, line)
        .first()
        .and_then(|r| file_at(index, r, 0));
    LineSite {
        line: u32::from(u16::from_le_bytes(value.try_into().unwrap_or_default())),
        file: file.map_or(SiteFile::OneOf(Vec::new()), SiteFile::Known),
    }
}

/// The site a dynamic-debug descriptor records: its filename pointer
/// (third) and `lineno` (the low bits of the word at `line`).
pub fn dyndbg_site(index: &ElfIndex, sec: SectionIndex, start: u64, word: u32) -> LineSite {
    let file = index
        .relocs_in(sec, start + 16, start + 24)
        .first()
        .and_then(|r| file_at(index, r, 0));
    LineSite {
        line: word & DYNDBG_LINENO_BITS,
        file: file.map_or(SiteFile::OneOf(Vec::new()), SiteFile::Known),
    }
}

/// The offset of the line field of an x86 `__bug_table` entry (see the
/// module header), or `None` for any other entry.
pub fn bug_line(index: &ElfIndex, e: &Entry) -> Option<u64> {
    let table = &index.sections[e.table];
    if table.name != "__bug_table" {
        return None;
    }
    let relocs: Vec<(u64, u8)> = index
        .relocs_in(e.table, e.start, e.end)
        .iter()
        .map(|r| (r.offset - e.start, r.width))
        .collect();
    // The displacements, then the line.
    match (e.end - e.start, relocs.as_slice()) {
        (12, [(0, 4), (4, 4)]) => Some(e.start + 8),
        (16, [(0, 4), (4, 4), (8, 4)]) => Some(e.start + 12),
        _ => None,
    }
}
