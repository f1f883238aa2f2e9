//! What one function's checksum is made of, step by step: the same hashing
//! code run into a recorder instead of XXH3, so that `klp-link --explain`
//! shows exactly what the checksum saw where two versions first differ.

use iced_x86::{Decoder, DecoderOptions, Formatter, GasFormatter};

use super::describe::{tag, Describer, HashExt};
use super::elf_index::{ElfIndex, SymType};
use super::tables::Tables;
use super::ChecksumError;

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
    steps: Vec<(Option<(usize, u64)>, Step)>,
}

impl Recorder {
    fn push(&mut self, t: Token) {
        if self.steps.is_empty() {
            self.steps.push((
                None,
                Step {
                    label: "start".into(),
                    tokens: Vec::new(),
                },
            ));
        }
        self.steps.last_mut().expect("just pushed").1.tokens.push(t);
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
    fn insn(&mut self, section: usize, ip: u64) {
        self.steps.push((
            Some((section, ip)),
            Step {
                label: String::new(),
                tokens: vec![Token::Tag(tag::INSN)],
            },
        ));
    }
}

/// The steps of the checksum of function `name` (exact or demangled name)
/// in the object `data`; `None` if it has no such function.
pub fn trace_function(data: &[u8], name: &str) -> Result<Option<Vec<Step>>, ChecksumError> {
    let index = ElfIndex::parse(data)?;
    let tables = Tables::new(&index);
    let Some(f) = (0..index.symbols.len())
        .filter(|&i| {
            index.symbols[i].sym_type == SymType::Func && index.symbols[i].section.is_some()
        })
        .find(|&i| index.symbols[i].name == name)
        .or_else(|| {
            (0..index.symbols.len()).find(|&i| {
                index.symbols[i].sym_type == SymType::Func && index.symbols[i].demangled == name
            })
        })
    else {
        return Ok(None);
    };
    let mut describer = Describer::new(&index);
    let mut rec = Recorder::default();
    super::hash_function(&mut rec, &mut describer, &tables, f);
    let functions = super::functions(&index);
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
    Ok(Some(steps))
}

/// `symbol+0xoff: instruction` for the instruction at `ip` of `sec`.
fn disassemble(index: &ElfIndex, sec: usize, ip: u64) -> String {
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
    let mut decoder = Decoder::with_ip(64, &data[from..], ip, DecoderOptions::NONE);
    let insn = decoder.decode();
    let mut text = String::new();
    GasFormatter::new().format(&insn, &mut text);
    format!("{where_}: {text}")
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
