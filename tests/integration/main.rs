//! One integration-test binary (ripgrep style): each module tests one face of
//! klp-cc against a real compiler and real ELF.

mod corpus;
mod escape;
mod extract;
mod fix_lines;
mod hostile_paths;
mod invocation;
mod link;
mod non_utf8;
mod objtool;
mod passthrough;
mod patch_run;
mod robustness;
mod support;
