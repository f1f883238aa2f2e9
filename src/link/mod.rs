//! klp-link: from two klp-cc builds of one kernel tree to a report of what
//! changed.
//!
//! - [`tree`] reads which objects make up vmlinux and each module.
//! - [`load`] reads an object's manifest and checks it against the object.
//! - [`snapshot`] keeps what the original build's tree had.
//! - [`destination`] decides which paths klp-link may write or replace;
//!   [`input`] reads the files a user names, regular files only.
//! - [`correlate`] pairs one object's symbols across the two builds.
//! - [`compare`] turns that into a report per target, with what it refuses
//!   ([`data_uses`]: may a changed constant be carried as a copy, and which
//!   functions does changed per-callsite metadata belong to?);
//!   [`report`] renders it for people and as JSON.
//! - [`once_flags`] decides which once-flags a copied function shares with
//!   the running kernel.
//! - [`explain`] shows where two versions of a function first differ.
//! - [`fix_lines`] keeps a source patch from moving the line numbers of
//!   code it does not change; [`line_map`] reads where a patch moved each
//!   line, to check line-only differences against.
//! - [`extract`], [`module`] and [`klp_rewrite`] make the livepatch module;
//!   [`sympos`], [`symvers`] and [`running`] say what the running kernel has.
//! - [`commands`] ties these together for the `klp-link` binary;
//!   [`patch`] runs them all, from a source patch to a module, on a tree
//!   it patches, rebuilds and restores.

pub mod commands;
pub mod compare;
pub mod correlate;
pub mod data_uses;
pub mod destination;
pub mod explain;
pub mod export_crcs;
pub mod extract;
pub mod fix_lines;
pub mod input;
pub mod kconfig;
pub mod klp_rewrite;
pub mod line_map;
pub mod load;
pub mod module;
pub mod module_reload;
pub mod once_flags;
pub mod patch;
pub mod report;
pub mod running;
pub mod signing;
pub mod snapshot;
pub mod sympos;
pub mod symvers;
pub mod tree;
