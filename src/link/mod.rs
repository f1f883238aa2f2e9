//! klp-link: from two klp-cc builds of one kernel tree to a report of what
//! changed.
//!
//! - [`tree`] reads which objects make up vmlinux and each module.
//! - [`correlate`] pairs one object's symbols across the two builds.

pub mod correlate;
pub mod tree;
