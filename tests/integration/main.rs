//! One integration-test binary (ripgrep style): each module tests one face of
//! klp-cc against a real compiler and real ELF.

mod corpus;
mod extract;
mod fix_lines;
mod invocation;
mod link;
mod objtool;
mod passthrough;
mod robustness;
mod support;
