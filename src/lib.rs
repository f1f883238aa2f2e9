//! klp-cc builds Linux kernel live-patch modules from checksum manifests that are
//! written while the kernel itself is being built.
//!
//! The phases, each in its own module:
//!
//! - [`config`]: the `KLP_CC_*` environment settings, read once at start-up.
//! - [`args`]: a pure reading of a compiler command line: does it compile sources
//!   to objects (and which), or must it pass through untouched, and why.
//! - [`compiler`]: finding the real compiler (never ourselves) and running it
//!   transparently: status, output and signals pass through.
//! - [`arch`]: the instruction model (x86-64 with iced-x86), the one place
//!   that decodes machine code.
//! - [`elf`]: the ELF read model of one object (sections, symbols,
//!   relocations, sorted lookups), shared by checksums and extraction.
//! - [`checksum`]: one position-independent XXH3 checksum per function and data
//!   object of an x86-64 ELF object.
//! - [`special_sections`]: the kernel's tables about code, and what the
//!   checksums and the extraction do with each.
//! - [`callsite`]: the data that belongs to one call site (descriptors,
//!   once-flags), which the compare and the extraction treat as code's.
//! - [`response_file`]: `@file` arguments, expanded before classification.
//! - [`manifest`]: the versioned text format those checksums are stored in,
//!   written atomically beside each object.
//! - [`shim`]: the klp-cc front end that ties the above together for one compile.
//! - [`link`]: klp-link, from two builds' manifests to a livepatch module.
//! - [`atomic_file`]: files written whole or not at all.

pub mod arch;
pub mod args;
pub mod atomic_file;
pub mod callsite;
pub mod checksum;
pub mod compiler;
pub mod config;
pub mod elf;
pub mod link;
pub mod manifest;
pub mod response_file;
pub mod shim;
pub mod special_sections;
