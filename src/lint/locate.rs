//! Where a value sits in its file: line and column of a path such as
//! `groups/0/rules/3/expr` (YAML) or `panels/2/targets/0/expr` (JSON).
//!
//! serde's `Value`s carry no positions, so files are parsed once for their content and,
//! only when a finding needs a line, scanned again for positions: YAML with
//! yaml-rust2's marked events, JSON with a small hand-written skipper (serde_json has no
//! span API, and the scan only has to skip over valid JSON to one path).

use crate::stack::dashboard::PathSeg;
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
pub type Pos = (usize, usize);

/// Path segments as one string key: `a/0/b`.
pub fn path_key(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for (i, seg) in path.iter().enumerate() {
        if i > 0 {
            s.push('/');
        }
        match seg {
            PathSeg::Key(k) => s.push_str(k),
            PathSeg::Index(n) => s.push_str(&n.to_string()),
        }
    }
    s
}

/// Build a path from `"a/0/b"`-style text (numbers become indices).
pub fn path(s: &str) -> Vec<PathSeg> {
    s.split('/').filter(|p| !p.is_empty()).map(|p| p.parse::<usize>().map(PathSeg::Index).unwrap_or_else(|_| PathSeg::Key(p.to_string()))).collect()
}

/// Positions of every key and value of a YAML document, by path. Paths are kept as a
/// 64-bit hash chained segment by segment (parent hash, then the segment), so building
/// is linear in the document whatever its depth, and each node costs a few words.
#[derive(Debug, Default)]
pub struct YamlIndex {
    /// path hash -> position of the mapping key (when the last segment is a key)
    keys: HashMap<u64, Pos>,
    /// path hash -> position of the value
    values: HashMap<u64, Pos>,
}

const ROOT: u64 = 0xcbf2_9ce4_8422_2325;

/// The hash of `parent/seg` (FNV-1a over the segment, seeded with the parent's hash).
fn step(parent: u64, seg: &str) -> u64 {
    let mut h = parent ^ 0x2f; // the separator
    h = h.wrapping_mul(0x0100_0000_01b3);
    for b in seg.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn hash_path(path: &[PathSeg]) -> u64 {
    path.iter().fold(ROOT, |h, seg| match seg {
        PathSeg::Key(k) => step(h, k),
        PathSeg::Index(n) => step(h, &n.to_string()),
    })
}

enum Frame {
    Map { key: Option<String>, expect_key: bool },
    Seq { index: usize },
}

struct Builder {
    stack: Vec<Frame>,
    /// Hash of each open container's path.
    prefix: Vec<u64>,
    index: YamlIndex,
}

impl Builder {
    fn current_path(&self) -> u64 {
        let base = self.prefix.last().copied().unwrap_or(ROOT);
        match self.stack.last() {
            Some(Frame::Map { key: Some(k), .. }) => step(base, k),
            Some(Frame::Seq { index }) => step(base, &index.to_string()),
            _ => base,
        }
    }

    fn advance(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { expect_key, .. }) => *expect_key = true,
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }

    fn value_at(&mut self, mark: Marker) {
        let p = self.current_path();
        self.index.values.entry(p).or_insert((mark.line(), mark.col() + 1));
    }

    fn open(&mut self, frame: Frame, mark: Marker) {
        self.value_at(mark);
        if !self.stack.is_empty() {
            let p = self.current_path();
            self.prefix.push(p);
        }
        self.stack.push(frame);
    }

    fn close(&mut self) {
        self.stack.pop();
        if !self.stack.is_empty() {
            self.prefix.pop();
        }
        self.advance();
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(s, ..) => {
                if let Some(Frame::Map { key, expect_key }) = self.stack.last_mut() {
                    if *expect_key {
                        *key = Some(s);
                        *expect_key = false;
                        let p = self.current_path();
                        self.index.keys.entry(p).or_insert((mark.line(), mark.col() + 1));
                        return;
                    }
                }
                self.value_at(mark);
                self.advance();
            }
            Event::Alias(_) => {
                self.value_at(mark);
                self.advance();
            }
            Event::MappingStart(..) => self.open(Frame::Map { key: None, expect_key: true }, mark),
            Event::SequenceStart(..) => self.open(Frame::Seq { index: 0 }, mark),
            Event::MappingEnd | Event::SequenceEnd => self.close(),
            _ => {}
        }
    }
}

impl YamlIndex {
    /// Index a YAML text (first document). A text that does not parse gives an empty index.
    pub fn build(text: &str) -> YamlIndex {
        let mut b = Builder { stack: vec![], prefix: vec![], index: YamlIndex::default() };
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut b, false);
        b.index
    }

    /// Position of the key of `path` (or of its value, for sequence items), else of the
    /// nearest ancestor that has one.
    pub fn find(&self, path: &[PathSeg]) -> Option<Pos> {
        let mut p = path;
        loop {
            let k = hash_path(p);
            if let Some(pos) = self.keys.get(&k).or_else(|| self.values.get(&k)) {
                return Some(*pos);
            }
            p = p.split_last()?.1;
        }
    }

    /// Position of the value of `path` (e.g. a scalar inside a flow sequence).
    pub fn find_value(&self, path: &[PathSeg]) -> Option<Pos> {
        self.values.get(&hash_path(path)).copied().or_else(|| self.find(path))
    }
}

/// Line and column (1-based) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> Pos {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = offset - before.iter().rposition(|&b| b == b'\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// Position of `path` in a JSON text: the member's key for object members, the value's
/// first character for array elements; else the nearest ancestor found.
pub fn json_find(text: &str, path: &[PathSeg]) -> Option<Pos> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    let mut found = None;
    for seg in path {
        match (seg, b.get(i)) {
            (PathSeg::Key(k), Some(b'{')) => {
                i += 1;
                let mut hit = None;
                loop {
                    i = skip_ws(b, i);
                    if b.get(i) != Some(&b'"') {
                        break;
                    }
                    let key_start = i;
                    let (name, after) = read_string(b, i)?;
                    i = skip_ws(b, after);
                    if b.get(i) != Some(&b':') {
                        return found;
                    }
                    i = skip_ws(b, i + 1);
                    if name == *k {
                        hit = Some(key_start);
                        break;
                    }
                    i = skip_value(b, i)?;
                    i = skip_ws(b, i);
                    if b.get(i) == Some(&b',') {
                        i += 1;
                    }
                }
                match hit {
                    Some(ks) => found = Some(line_col(text, ks)),
                    None => return found,
                }
            }
            (PathSeg::Index(n), Some(b'[')) => {
                i = skip_ws(b, i + 1);
                for _ in 0..*n {
                    if b.get(i) == Some(&b']') {
                        return found;
                    }
                    i = skip_value(b, i)?;
                    i = skip_ws(b, i);
                    if b.get(i) == Some(&b',') {
                        i = skip_ws(b, i + 1);
                    }
                }
                if b.get(i) == Some(&b']') {
                    return found;
                }
                found = Some(line_col(text, i));
            }
            _ => return found,
        }
    }
    found
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// Read a JSON string starting at the quote: (unescaped-enough text, index after it).
fn read_string(b: &[u8], i: usize) -> Option<(String, usize)> {
    let mut j = i + 1;
    let mut out = Vec::new();
    while j < b.len() {
        match b[j] {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), j + 1)),
            b'\\' => {
                out.push(*b.get(j + 1)?);
                j += 2;
            }
            c => {
                out.push(c);
                j += 1;
            }
        }
    }
    None
}

fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => read_string(b, i).map(|(_, j)| j),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = read_string(b, j)?.1;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                j += 1;
            }
            Some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_positions() {
        let t = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n  - record: r\n    expr: |\n      sum(x)\nx: {a: 1, b: [p, q]}\n";
        let ix = YamlIndex::build(t);
        assert_eq!(ix.find(&path("groups/0/rules/1/expr")).unwrap().0, 7);
        assert_eq!(ix.find(&path("groups/0/rules/0/alert")).unwrap().0, 4);
        assert_eq!(ix.find(&path("groups/0/rules/0/for")).unwrap().0, 4);
        assert_eq!(ix.find(&path("x/b")).unwrap(), (9, 11));
        assert_eq!(ix.find_value(&path("x/b/1")).unwrap(), (9, 18));
    }

    #[test]
    fn json_positions() {
        let t = "{\n \"a\": {\"x\": [1, {\"k\": \"v\\\"\"}]},\n \"panels\": [\n  {\"title\": \"p\"},\n  {\"targets\": [{\"expr\": \"up\"}]}\n ]\n}";
        assert_eq!(json_find(t, &path("panels/1/targets/0/expr")), Some((5, 17)));
        assert_eq!(json_find(t, &path("panels/0/title")), Some((4, 4)));
        assert_eq!(json_find(t, &path("panels/0/nope")), Some((4, 3)));
        assert_eq!(json_find(t, &path("a/x/1/k")).map(|p| p.0), Some(2));
    }
}
