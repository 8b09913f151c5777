//! A push parser for nested, length-prefixed elements (EBML, ISO BMFF). Bytes go in as they
//! arrive, in pieces of any size; the grammar sees each element's header and the first bytes of
//! the payload it asks for, and everything else is skipped without being held. Memory stays
//! bounded by the largest header or payload prefix a grammar reads, whatever the elements' sizes.
//!
//! Anything that does not fit the grammar is [`Damage`]: an element where it cannot be, a child
//! that runs past its parent, a header that does not parse, or data that ends inside an element.

use std::ops::Range;

/// Where parsing stopped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// Offset of the element (or header) that could not be parsed.
    pub at: u64,
    pub why: String,
}

/// An element header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub id: u32,
    pub len: u64,
    /// Payload size; `None` for EBML's unknown size (the element ends where its parent's next
    /// child, or an element of an outer level, begins).
    pub size: Option<u64>,
}

/// What to do with an element whose header was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A container: children follow.
    Enter,
    /// Read up to this many bytes of the payload (at most 64; see [`Grammar::read`]), skip the
    /// rest.
    Read(usize),
    /// Skip the payload.
    Skip,
}

/// A container format's rules.
pub trait Grammar {
    /// The longest header.
    const MAX_HEADER: usize;

    /// Parse a header at the start of `buf`: `Ok(None)` when more bytes are needed.
    fn header(&self, buf: &[u8]) -> Result<Option<Head>, String>;

    /// Whether `id` may appear inside `parent` (`None`: the top level).
    fn allowed(&self, parent: Option<u32>, id: u32) -> bool;

    /// An element begins at `start`, inside `parent`.
    fn enter(&mut self, parent: Option<u32>, head: &Head, start: u64) -> Result<Step, String>;

    /// The first bytes of a [`Step::Read`] element's payload (fewer only when the payload is
    /// shorter). `Some(n)`: hand the rest of the payload to [`Grammar::record`] in records of
    /// `n` bytes (at most 64); `None`: skip it.
    fn read(&mut self, id: u32, bytes: &[u8], size: u64) -> Result<Option<usize>, String>;

    /// One fixed-size record of an element's payload (see [`Grammar::read`]).
    fn record(&mut self, _id: u32, _bytes: &[u8]) -> Result<(), String> {
        Err("unexpected record".into())
    }

    /// The data has ended with every element complete: anything the grammar still waits for
    /// is damage.
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// An element (leaf or container) inside `parent` ended.
    fn exit(&mut self, parent: Option<u32>, id: u32, span: Range<u64>) -> Result<(), String>;
}

/// The most bytes held at once: a header, a payload prefix, or a record.
const HELD: usize = 64;

/// Up to [`HELD`] bytes, held inline, so that parsing allocates nothing as it goes.
#[derive(Clone, Copy, Debug)]
struct Held {
    bytes: [u8; HELD],
    len: usize,
}

impl Held {
    const EMPTY: Self = Self {
        bytes: [0; HELD],
        len: 0,
    };

    fn push(&mut self, data: &[u8]) {
        self.bytes[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[derive(Clone, Copy, Debug)]
struct Open {
    id: u32,
    start: u64,
    /// Where the payload begins.
    body: u64,
    end: Option<u64>,
}

impl Open {
    fn size(&self) -> u64 {
        self.end.expect("a sized element") - self.body
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Between elements; holds the bytes of a header read so far.
    Header(Held),
    /// Reading the first `want` bytes of a leaf's payload.
    Read { leaf: Open, want: usize, got: Held },
    /// Handing a leaf's payload over in records of `len` bytes.
    Records { leaf: Open, len: usize, got: Held },
    /// Skipping to a leaf's end.
    Skip { leaf: Open },
}

#[derive(Debug)]
pub struct Walker<G> {
    pub grammar: G,
    pos: u64,
    open: Vec<Open>,
    mode: Mode,
}

impl<G: Grammar> Walker<G> {
    pub fn new(grammar: G) -> Self {
        Self {
            grammar,
            pos: 0,
            open: Vec::new(),
            mode: Mode::Header(Held::EMPTY),
        }
    }

    /// A walker over the same stream that starts again at `pos`, with `grammar`, inside this
    /// one's outermost container (the Matroska Segment) when `keep_outermost`.
    pub fn restart_at(&self, grammar: G, pos: u64, keep_outermost: bool) -> Self {
        let open = if keep_outermost {
            self.open.iter().take(1).copied().collect()
        } else {
            Vec::new()
        };
        Self {
            grammar,
            pos,
            open,
            mode: Mode::Header(Held::EMPTY),
        }
    }

    /// Offset of the next byte expected.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Where the element being read began, or `None` between elements.
    pub fn inside(&self) -> Option<u64> {
        match &self.mode {
            Mode::Header(buf) if buf.len == 0 => None,
            Mode::Header(buf) => Some(self.pos - buf.len as u64),
            Mode::Read { leaf, .. } | Mode::Records { leaf, .. } | Mode::Skip { leaf } => {
                Some(leaf.start)
            }
        }
    }

    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Damage> {
        while !data.is_empty() {
            let used = match self.mode {
                Mode::Header(_) => self.take_header(data)?,
                Mode::Read { .. } => self.take_read(data)?,
                Mode::Records { .. } => self.take_records(data)?,
                Mode::Skip { leaf } => {
                    let n = data
                        .len()
                        .min((leaf.end.expect("sized") - self.pos) as usize);
                    self.pos += n as u64;
                    self.end_leaf_if_done()?;
                    n
                }
            };
            data = &data[used..];
        }
        Ok(())
    }

    /// The data has ended: every element must be complete (unknown-size containers end here).
    pub fn finish(&mut self) -> Result<(), Damage> {
        if let Some(start) = self.inside() {
            return Err(damage(start, "the data ends inside this element"));
        }
        self.close_ended()?;
        while let Some(open) = self.open.pop() {
            if open.end.is_some() {
                return Err(damage(open.start, "the data ends inside this element"));
            }
            self.exit(open, self.pos)?;
        }
        self.grammar.finish().map_err(|why| damage(self.pos, why))
    }

    /// `element` ended at `end`; it is no longer on the open stack.
    fn exit(&mut self, element: Open, end: u64) -> Result<(), Damage> {
        let parent = self.open.last().map(|p| p.id);
        self.grammar
            .exit(parent, element.id, element.start..end)
            .map_err(|why| damage(element.start, why))
    }

    fn take_header(&mut self, data: &[u8]) -> Result<usize, Damage> {
        if self.inside().is_none() {
            self.close_ended()?;
        }
        let Mode::Header(buf) = &mut self.mode else {
            unreachable!("between elements")
        };
        let held = buf.len;
        let start = self.pos - held as u64;
        let take = data.len().min(G::MAX_HEADER - held);
        let parsed = if held == 0 {
            self.grammar.header(data)
        } else {
            buf.push(&data[..take]);
            self.grammar.header(buf.as_slice())
        }
        .map_err(|why| damage(start, why))?;
        match parsed {
            Some(head) => {
                *buf = Held::EMPTY;
                self.pos = start + head.len;
                self.begin(head, start)?;
                Ok(head.len as usize - held)
            }
            None => {
                if held == 0 {
                    buf.push(&data[..take]);
                }
                if buf.len >= G::MAX_HEADER {
                    return Err(damage(start, "a header that does not parse"));
                }
                self.pos += take as u64;
                Ok(take)
            }
        }
    }

    fn take_read(&mut self, data: &[u8]) -> Result<usize, Damage> {
        let Mode::Read { leaf, want, got } = &mut self.mode else {
            unreachable!("reading")
        };
        let left = leaf.end.expect("sized") - self.pos;
        let n = data.len().min(*want - got.len).min(left as usize);
        got.push(&data[..n]);
        self.pos += n as u64;
        if got.len == *want || self.pos == leaf.end.expect("sized") {
            self.hand_over_read()?;
        }
        Ok(n)
    }

    /// Give the grammar what was read of a leaf, then skip the rest or read it in records.
    fn hand_over_read(&mut self) -> Result<(), Damage> {
        let Mode::Read { leaf, got, .. } = self.mode else {
            unreachable!("reading")
        };
        let next = self
            .grammar
            .read(leaf.id, got.as_slice(), leaf.size())
            .map_err(|why| damage(leaf.start, why))?;
        self.mode = match next {
            Some(len) if len > 0 => Mode::Records {
                leaf,
                len: len.min(HELD),
                got: Held::EMPTY,
            },
            _ => Mode::Skip { leaf },
        };
        self.end_leaf_if_done()
    }

    fn take_records(&mut self, data: &[u8]) -> Result<usize, Damage> {
        let Mode::Records { leaf, len, got } = &mut self.mode else {
            unreachable!("records")
        };
        let end = leaf.end.expect("sized");
        let n = data
            .len()
            .min(*len - got.len)
            .min((end - self.pos) as usize);
        got.push(&data[..n]);
        self.pos += n as u64;
        if got.len == *len {
            self.grammar
                .record(leaf.id, got.as_slice())
                .map_err(|why| damage(leaf.start, why))?;
            *got = Held::EMPTY;
        }
        if self.pos == end && got.len != 0 {
            return Err(damage(leaf.start, "a record runs past its element"));
        }
        self.end_leaf_if_done()?;
        Ok(n)
    }

    /// Close the containers that end where the next element would begin.
    fn close_ended(&mut self) -> Result<(), Damage> {
        while let Some(open) = self.open.last().copied()
            && open.end == Some(self.pos)
        {
            self.open.pop();
            self.exit(open, self.pos)?;
        }
        Ok(())
    }

    fn end_leaf_if_done(&mut self) -> Result<(), Damage> {
        let (Mode::Skip { leaf } | Mode::Records { leaf, .. }) = &self.mode else {
            return Ok(());
        };
        if leaf.end != Some(self.pos) {
            return Ok(());
        }
        let leaf = *leaf;
        self.mode = Mode::Header(Held::EMPTY);
        self.exit(leaf, self.pos)
    }

    /// An element's header has been read: find its parent (closing unknown-size containers it
    /// cannot belong to), check it fits, and do what the grammar says.
    fn begin(&mut self, head: Head, start: u64) -> Result<(), Damage> {
        loop {
            let parent = self.open.last().copied();
            if self.grammar.allowed(parent.map(|p| p.id), head.id) {
                break;
            }
            let fits_outside = self
                .open
                .iter()
                .rev()
                .skip(1)
                .map(|o| Some(o.id))
                .chain([None])
                .any(|p| self.grammar.allowed(p, head.id));
            match parent {
                Some(p) if p.end.is_none() && fits_outside => {
                    self.open.pop();
                    self.exit(p, start)?;
                }
                _ => {
                    let place = parent.map_or("the top level".into(), |p| format!("{:#x}", p.id));
                    return Err(damage(
                        start,
                        format!("element {:#x} cannot be inside {place}", head.id),
                    ));
                }
            }
        }
        let parent = self.open.last().copied();
        let body = start + head.len;
        let end = head.size.map(|s| body + s);
        if let (Some(end), Some(parent_end)) = (end, parent.and_then(|p| p.end))
            && end > parent_end
        {
            return Err(damage(start, "the element runs past its parent"));
        }
        let element = Open {
            id: head.id,
            start,
            body,
            end,
        };
        let step = self
            .grammar
            .enter(parent.map(|p| p.id), &head, start)
            .map_err(|why| damage(start, why))?;
        if step != Step::Enter && end.is_none() {
            return Err(damage(start, "a leaf element of unknown size"));
        }
        match step {
            Step::Enter => self.open.push(element),
            Step::Read(want) => {
                self.mode = Mode::Read {
                    leaf: element,
                    want: want.min(HELD),
                    got: Held::EMPTY,
                };
                if want == 0 || end == Some(body) {
                    self.hand_over_read()?;
                }
            }
            Step::Skip => {
                self.mode = Mode::Skip { leaf: element };
                self.end_leaf_if_done()?;
            }
        }
        Ok(())
    }
}

fn damage(at: u64, why: impl Into<String>) -> Damage {
    Damage {
        at,
        why: why.into(),
    }
}
