//! What one function's checksum is made of, step by step: the same hashing
//! code run into a recorder instead of XXH3, so that `klp-link --explain`
//! shows exactly what the checksum saw where two versions first differ.

use std::fmt;

use crate::arch::{x86_64::X86_64, Arch as _};

use super::describe::{tag, Describer, HashExt};
use super::tables::Tables;
use crate::elf::ObjectError;
use crate::elf::{ElfIndex, NotDefined, SectionIndex};

/// One value written into the checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Tag(u8),
    Num(u64),
    Bytes(Vec<u8>),
}

/// A stretch of the checksum input: one instruction, a `.cold` part's
/// start, or one special-section entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Where it comes from, for people: `func+0x1c: mov ...`, `.cold part`,
    /// `__jump_table entry`.
    pub label: String,
    pub tokens: Vec<Token>,
}

#[derive(Default)]
struct Recorder {
    steps: Vec<(Option<(SectionIndex, u64)>, Step)>,
}

impl Recorder {
    fn push(&mut self, t: Token) {
        match self.steps.last_mut() {
            Some((_, step)) => step.tokens.push(t),
            None => self.steps.push((
                None,
                Step {
                    label: "start".into(),
                    tokens: vec![t],
                },
            )),
        }
    }
}

impl HashExt for Recorder {
    fn tag(&mut self, t: u8) {
        let label = match t {
            tag::COLD => Some(".cold part"),
            tag::ENTRY => Some("special-section entry"),
            _ => None,
        };
        if let Some(label) = label {
            self.steps.push((
                None,
                Step {
                    label: label.into(),
                    tokens: Vec::new(),
                },
            ));
        }
        self.push(Token::Tag(t));
    }
    fn u64(&mut self, v: u64) {
        self.push(Token::Num(v));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.push(Token::Bytes(b.to_vec()));
    }
    fn insn(&mut self, section: SectionIndex, ip: u64) {
        self.steps.push((
            Some((section, ip)),
            Step {
                label: String::new(),
                tokens: vec![Token::Tag(tag::INSN)],
            },
        ));
    }
}

/// Why a function cannot be traced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceError {
    /// The object has no checksums at all.
    Object(ObjectError),
    /// `name` is not a function the object defines.
    NotDefined { name: String, why: NotDefined },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Object(e) => write!(f, "{e}"),
            TraceError::NotDefined { name, why } => {
                write!(f, "`{name}` is not a defined function ({why})")
            }
        }
    }
}

impl std::error::Error for TraceError {}

impl From<ObjectError> for TraceError {
    fn from(e: ObjectError) -> Self {
        TraceError::Object(e)
    }
}

/// The steps of the checksum of function `name` (exact or demangled name)
/// in the object `data`.
pub fn trace_function(data: &[u8], name: &str) -> Result<Vec<Step>, TraceError> {
    let index = ElfIndex::parse(data)?;
    let tables = Tables::new(&index);
    let f = index
        .function_named_or_demangled(name)
        .map_err(|why| TraceError::NotDefined {
            name: name.to_owned(),
            why,
        })?;
    let mut describer = Describer::new(&index);
    let mut rec = Recorder::default();
    super::hash_function(&mut rec, &mut describer, &tables, f);
    let functions = super::functions(&index)?;
    for child in super::cold_children(&index, &functions)
        .remove(&f)
        .unwrap_or_default()
    {
        rec.tag(tag::COLD);
        super::hash_function(&mut rec, &mut describer, &tables, child);
    }
    let steps = rec
        .steps
        .into_iter()
        .map(|(at, mut step)| {
            if let Some((sec, ip)) = at {
                step.label = disassemble(&index, sec, ip);
            }
            step
        })
        .collect();
    Ok(steps)
}

/// `symbol+0xoff: instruction` for the instruction at `ip` of `sec`.
fn disassemble(index: &ElfIndex, sec: SectionIndex, ip: u64) -> String {
    let where_ = match index.symbol_at(sec, ip) {
        Some(s) => format!(
            "{}+{:#x}",
            index.symbols[s].name,
            ip - index.symbols[s].value
        ),
        None => format!("{}+{ip:#x}", index.sections[sec].name),
    };
    let data = index.sections[sec].data;
    let from = (ip as usize).min(data.len());
    format!("{where_}: {}", X86_64.format(&data[from..], ip))
}

/// The tokens of a step as a person reads them: names and strings quoted,
/// numbers in hex, raw instruction bytes in hex.
pub fn render_tokens(tokens: &[Token]) -> String {
    let mut out = Vec::new();
    for t in tokens {
        out.push(match t {
            Token::Tag(t) => match *t {
                tag::SYMBOL => "symbol".into(),
                tag::READ_ONLY => "constant-object".into(),
                tag::STRING => "string".into(),
                tag::CONSTANT => "pool-constant".into(),
                tag::ANONYMOUS => "unnamed-data".into(),
                tag::RELOC => "reloc".into(),
                tag::BRANCH => "branch".into(),
                tag::RIP => "rip-relative".into(),
                tag::LABEL => "label".into(),
                tag::JUMP_LABEL => "jump-label-site".into(),
                tag::OUTSIDE => "outside-section".into(),
                tag::TABLE_ENTRY => "table-entry".into(),
                tag::INSN | tag::COLD | tag::ENTRY => continue,
                other => format!("tag{other}"),
            },
            Token::Num(n) => format!("{n:#x}"),
            Token::Bytes(b) if !b.is_empty() && b.iter().all(|c| (0x20..0x7f).contains(c)) => {
                format!("\"{}\"", String::from_utf8_lossy(b))
            }
            Token::Bytes(b) => b.iter().map(|c| format!("{c:02x}")).collect::<String>(),
        });
    }
    out.join(" ")
}
