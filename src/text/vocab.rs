//! Feature id → dense embedding row.
//!
//! A [`VocabBuilder`] counts features over a training corpus; [`Vocab`] keeps
//! the frequent ones, in a deterministic order, as rows `0..len`. The file
//! format is one line per row, `"{id:016x}\t{key}"`, so a vocabulary can be
//! diffed and inspected by eye.

use std::collections::HashMap;
use std::fs::{self, File};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::tokenizer::{Tokenizer, Tokens};

/// Hasher for keys that already are uniform 64-bit hashes: hashing them
/// again (SipHash by default) would only cost time on the serving path.
#[derive(Clone, Copy, Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for u64 keys; this keeps other uses sound.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Counts of features over a corpus, with the first key seen for each id.
#[derive(Clone, Debug, Default)]
pub struct VocabBuilder {
    counts: IdMap<(u64, String)>,
}

impl VocabBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts every feature of `text` as the tokenizer emits it (so
    /// truncated texts only count their kept features, like at serving time).
    pub fn add(&mut self, tokenizer: &Tokenizer, text: &str) {
        let (tokens, keys) = tokenizer.tokenize_with_keys(text);
        for (feature, key) in tokens.features.iter().zip(keys) {
            self.counts.entry(feature.id).or_insert((0, key)).0 += 1;
        }
    }

    /// Number of distinct features counted so far.
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }

    /// How often the feature `id` was counted.
    pub fn count(&self, id: u64) -> u64 {
        self.counts.get(&id).map_or(0, |&(count, _)| count)
    }

    /// A vocabulary of at most `max_size` features seen `>= min_count` times,
    /// most frequent first (ties: key bytes, then id, ascending).
    pub fn build(self, min_count: u64, max_size: usize) -> Vocab {
        let mut vocab = Vocab::default();
        vocab.extend_with(self, min_count, max_size);
        vocab
    }

    /// The best `limit` features passing `min_count` and `keep`, ranked.
    fn ranked(
        self,
        min_count: u64,
        limit: usize,
        keep: impl Fn(u64) -> bool,
    ) -> Vec<(u64, String)> {
        let mut candidates: Vec<(u64, u64, String)> = self
            .counts
            .into_iter()
            .filter(|&(id, (count, _))| count >= min_count && keep(id))
            .map(|(id, (count, key))| (count, id, key))
            .collect();
        let order = |a: &(u64, u64, String), b: &(u64, u64, String)| {
            b.0.cmp(&a.0)
                .then_with(|| a.2.as_bytes().cmp(b.2.as_bytes()))
                .then(a.1.cmp(&b.1))
        };
        // Selecting before sorting keeps a huge long tail cheap.
        if candidates.len() > limit {
            candidates.select_nth_unstable_by(limit, order);
            candidates.truncate(limit);
        }
        candidates.sort_unstable_by(order);
        candidates
            .into_iter()
            .map(|(_, id, key)| (id, key))
            .collect()
    }
}

/// Feature ids of the known features, mapped to rows of an embedding table.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    entries: Vec<(u64, String)>,
    index: IdMap<u32>,
}

impl PartialEq for Vocab {
    fn eq(&self, other: &Self) -> bool {
        // `index` is derived from `entries`.
        self.entries == other.entries
    }
}

impl Eq for Vocab {}

/// A text's known features as embedding rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Rows of the known features, in feature order.
    pub rows: Vec<u32>,
    /// Original-text byte span of each row's feature.
    pub spans: Vec<(usize, usize)>,
    /// Whether the tokenizer dropped features at its limit.
    pub truncated: bool,
}

/// Why a vocabulary could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VocabError {
    /// The file could not be read.
    #[error("cannot read vocabulary {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A line is malformed.
    #[error("vocabulary {}, line {line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        problem: LineProblem,
    },
}

/// What is wrong with one line of a vocabulary file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("missing tab between id and key")]
    MissingTab,
    #[error("bad hex id {0:?} (want 16 hex digits)")]
    BadHex(String),
    #[error("duplicate id {id:016x} (first on line {first_line})")]
    DuplicateId { id: u64, first_line: usize },
    #[error("bad escape in key {0:?} (only \\\\ \\t \\n \\r)")]
    BadEscape(String),
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("more than u32::MAX rows")]
    TooManyRows,
}

/// Name used in errors for vocabularies parsed from memory.
const IN_MEMORY: &str = "<bytes>";

impl Vocab {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Row of feature `id`, if known.
    pub fn row(&self, id: u64) -> Option<u32> {
        self.index.get(&id).copied()
    }

    /// Human-readable key of `row`.
    pub fn key(&self, row: u32) -> Option<&str> {
        let row = usize::try_from(row).ok()?;
        self.entries.get(row).map(|(_, key)| key.as_str())
    }

    /// Feature id of `row`.
    pub fn id(&self, row: u32) -> Option<u64> {
        let row = usize::try_from(row).ok()?;
        self.entries.get(row).map(|&(id, _)| id)
    }

    /// Rows of the known features with their spans; unknown ones are dropped.
    pub fn encode(&self, tokens: &Tokens) -> Encoded {
        let mut encoded = Encoded {
            rows: Vec::with_capacity(tokens.features.len()),
            spans: Vec::with_capacity(tokens.features.len()),
            truncated: tokens.truncated,
        };
        for feature in &tokens.features {
            if let Some(row) = self.row(feature.id) {
                encoded.rows.push(row);
                encoded.spans.push((feature.start, feature.end));
            }
        }
        encoded
    }

    /// Appends up to `max_new` features of `other` seen `>= min_count` times
    /// that are not in the vocabulary yet, ranked like [`VocabBuilder::build`].
    /// Existing rows never move, so a trained embedding table stays valid and
    /// only needs new rows at its end. Returns how many rows were added.
    pub fn extend_with(&mut self, other: VocabBuilder, min_count: u64, max_new: usize) -> usize {
        let room = (u32::MAX as usize).saturating_sub(self.len());
        let added = other.ranked(min_count, max_new.min(room), |id| self.row(id).is_none());
        let count = added.len();
        for (id, key) in added {
            // Cannot fail: `room` keeps every row below u32::MAX.
            let _ = self.push(id, key);
        }
        count
    }

    /// Appends a row; `None` if the id is already present or rows ran out.
    fn push(&mut self, id: u64, key: String) -> Option<u32> {
        let row = u32::try_from(self.entries.len()).ok()?;
        if self.index.contains_key(&id) {
            return None;
        }
        self.index.insert(id, row);
        self.entries.push((id, key));
        Some(row)
    }

    /// Rows as `(row, id, key)`, in row order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64, &str)> {
        (0u32..)
            .zip(&self.entries)
            .map(|(row, (id, key))| (row, *id, key.as_str()))
    }

    /// Writes the text format: one `"{id:016x}\t{escaped key}\n"` per row.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        for (id, key) in &self.entries {
            writeln!(out, "{id:016x}\t{}", escape(key))?;
        }
        Ok(())
    }

    /// The text format in memory (e.g. to embed in a model bundle).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    /// Parses the text format; errors name the source as `<bytes>`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Vocab, VocabError> {
        parse(bytes, Path::new(IN_MEMORY))
    }

    /// Saves atomically: a temp file next to `path` is synced and renamed, so
    /// readers never see a half-written vocabulary.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let tmp = temp_path(path)?;
        let result = self.write_file(&tmp).and_then(|()| fs::rename(&tmp, path));
        if result.is_err() {
            // Best effort: the original error is the one worth reporting.
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_file(&self, path: &Path) -> io::Result<()> {
        let mut out = BufWriter::new(File::create(path)?);
        self.write_to(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    }

    /// Loads a file written by [`Vocab::save`].
    pub fn load(path: &Path) -> Result<Vocab, VocabError> {
        let bytes = fs::read(path).map_err(|source| VocabError::Io {
            path: path.to_owned(),
            source,
        })?;
        parse(&bytes, path)
    }
}

/// A unique sibling path for writing `path` atomically.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a file path: {}", path.display()),
        )
    })?;
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(path.with_file_name(format!(
        ".{}.tmp.{}.{unique}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Parses the text format; `origin` only names the source in errors.
fn parse(bytes: &[u8], origin: &Path) -> Result<Vocab, VocabError> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut vocab = Vocab::default();
    if bytes.is_empty() {
        return Ok(vocab);
    }
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let at = |problem| VocabError::Line {
            path: origin.to_owned(),
            line: line_no,
            problem,
        };
        let (id, key) = parse_line(line).map_err(at)?;
        if let Some(&row) = vocab.index.get(&id) {
            let first_line = row as usize + 1;
            return Err(at(LineProblem::DuplicateId { id, first_line }));
        }
        vocab
            .push(id, key)
            .ok_or_else(|| at(LineProblem::TooManyRows))?;
    }
    Ok(vocab)
}

/// One `"{id:016x}\t{key}"` line (a CRLF ending is tolerated).
fn parse_line(line: &[u8]) -> Result<(u64, String), LineProblem> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| LineProblem::NotUtf8)?;
    let (hex, key) = line.split_once('\t').ok_or(LineProblem::MissingTab)?;
    let bad_hex = || LineProblem::BadHex(hex.to_owned());
    // from_str_radix alone would also accept a sign and short ids.
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad_hex());
    }
    let id = u64::from_str_radix(hex, 16).map_err(|_| bad_hex())?;
    Ok((id, unescape(key)?))
}

/// Escapes the chars that would break the line format.
fn escape(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Inverse of [`escape`]; rejects unknown or dangling escapes.
fn unescape(key: &str) -> Result<String, LineProblem> {
    let mut out = String::with_capacity(key.len());
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            _ => return Err(LineProblem::BadEscape(key.to_owned())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokenizer::{TokenizerConfig, bigram_id, unigram_id};

    fn unigrams() -> Tokenizer {
        Tokenizer::new(TokenizerConfig {
            max_tokens: 256,
            bigrams: false,
        })
    }

    /// A fresh path in the temp dir, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let name = format!("textclf-vocab-{tag}-{}-{n}.tsv", std::process::id());
            Self(std::env::temp_dir().join(name))
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }

    fn keys(vocab: &Vocab) -> Vec<&str> {
        vocab.iter().map(|(_, _, key)| key).collect()
    }

    fn builder(texts: &[&str]) -> VocabBuilder {
        let tokenizer = unigrams();
        let mut builder = VocabBuilder::new();
        for text in texts {
            builder.add(&tokenizer, text);
        }
        builder
    }

    #[test]
    fn build_orders_by_count_then_key_and_applies_limits() {
        let b = builder(&["b a c", "a b d", "a e", "z y"]);
        assert_eq!(b.distinct(), 7);
        assert_eq!(b.count(unigram_id("a")), 3);
        // a:3, b:2, then c d e y z (count 1) by key bytes.
        let all = b.clone().build(1, usize::MAX);
        assert_eq!(keys(&all), ["a", "b", "c", "d", "e", "y", "z"]);
        assert_eq!(all.row(unigram_id("a")), Some(0));
        assert_eq!(all.row(unigram_id("z")), Some(6));
        assert_eq!(all.id(1), Some(unigram_id("b")));
        assert_eq!(keys(&b.clone().build(2, usize::MAX)), ["a", "b"]);
        assert_eq!(keys(&b.clone().build(1, 4)), ["a", "b", "c", "d"]);
        assert_eq!(keys(&b.clone().build(4, 10)), Vec::<&str>::new());
        assert!(b.build(1, 0).is_empty());
    }

    #[test]
    fn ties_with_equal_keys_fall_back_to_id() {
        let mut b = VocabBuilder::new();
        b.counts.insert(9, (1, "k".to_owned()));
        b.counts.insert(3, (1, "k".to_owned()));
        b.counts.insert(5, (2, "z".to_owned()));
        let vocab = b.build(1, 10);
        let ids: Vec<u64> = vocab.iter().map(|(_, id, _)| id).collect();
        assert_eq!(ids, [5, 3, 9]);
    }

    #[test]
    fn bigram_keys_are_readable() {
        let tokenizer = Tokenizer::default();
        let mut b = VocabBuilder::new();
        b.add(&tokenizer, "体育新闻");
        let vocab = b.build(1, 100);
        let row = vocab.row(bigram_id("体", "育")).expect("bigram counted");
        assert_eq!(vocab.key(row), Some("体 育"));
        assert_eq!(vocab.len(), 7);
    }

    #[test]
    fn encode_drops_unknown_features_and_keeps_spans() {
        let vocab = builder(&["lakers win", "lakers lose"]).build(2, 10);
        assert_eq!(keys(&vocab), ["lakers"]);
        let tokens = unigrams().tokenize("The Lakers, the LAKERS");
        let encoded = vocab.encode(&tokens);
        assert_eq!(
            encoded,
            Encoded {
                rows: vec![0, 0],
                spans: vec![(4, 10), (16, 22)],
                truncated: false
            }
        );
        let truncated = Tokenizer::new(TokenizerConfig {
            max_tokens: 1,
            bigrams: false,
        })
        .tokenize("lakers lakers");
        assert!(vocab.encode(&truncated).truncated);
    }

    #[test]
    fn save_load_round_trip_with_escapes() {
        let mut vocab = builder(&["湖人 lakers 😀"]).build(1, 10);
        vocab.push(7, "tab\there\nnew\\line\rcr".to_owned());
        let file = TempFile::new("roundtrip");
        vocab.save(&file.0).expect("save");
        let text = fs::read_to_string(&file.0).expect("read back");
        assert_eq!(text.lines().count(), 5);
        assert!(text.ends_with("0000000000000007\ttab\\there\\nnew\\\\line\\rcr\n"));
        let loaded = Vocab::load(&file.0).expect("load");
        assert_eq!(loaded, vocab);
        assert_eq!(loaded.key(4), Some("tab\there\nnew\\line\rcr"));
        assert_eq!(loaded.row(7), Some(4));
        assert_eq!(Vocab::from_bytes(&vocab.to_bytes()).expect("parse"), vocab);
        assert!(Vocab::from_bytes(b"").expect("empty").is_empty());
    }

    fn line_error(bytes: &[u8]) -> (usize, LineProblem) {
        match Vocab::from_bytes(bytes) {
            Err(VocabError::Line { line, problem, .. }) => (line, problem),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_files_name_the_line() {
        let ok = "00000000000000aa\ta\n";
        let cases: [(String, usize, LineProblem); 6] = [
            (
                format!("{ok}00000000000000bb b\n"),
                2,
                LineProblem::MissingTab,
            ),
            (
                format!("{ok}{ok}"),
                2,
                LineProblem::DuplicateId {
                    id: 0xaa,
                    first_line: 1,
                },
            ),
            (
                format!("{ok}xyz\tb\n"),
                2,
                LineProblem::BadHex("xyz".to_owned()),
            ),
            (
                "+00000000000000a\tb\n".to_owned(),
                1,
                LineProblem::BadHex("+00000000000000a".to_owned()),
            ),
            (
                "aa\tb\n".to_owned(),
                1,
                LineProblem::BadHex("aa".to_owned()),
            ),
            (format!("{ok}\n"), 2, LineProblem::MissingTab),
        ];
        for (text, line, problem) in cases {
            assert_eq!(line_error(text.as_bytes()), (line, problem), "{text:?}");
        }
        assert_eq!(
            line_error(b"00000000000000aa\tbad\\q"),
            (1, LineProblem::BadEscape("bad\\q".to_owned()))
        );
        assert_eq!(
            line_error(b"00000000000000aa\t\xff"),
            (1, LineProblem::NotUtf8)
        );

        let file = TempFile::new("corrupt");
        fs::write(
            &file.0,
            format!("{ok}00000000000000bb\tb\n0000000000000g00\tc\n"),
        )
        .expect("write");
        let err = Vocab::load(&file.0).expect_err("corrupt");
        let message = err.to_string();
        assert!(message.contains(&file.0.display().to_string()), "{message}");
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("0000000000000g00"), "{message}");
    }

    #[test]
    fn missing_file_is_an_io_error_naming_the_path() {
        let file = TempFile::new("missing");
        let err = Vocab::load(&file.0).expect_err("missing");
        assert!(matches!(err, VocabError::Io { .. }));
        assert!(err.to_string().contains(&file.0.display().to_string()));
    }

    #[test]
    fn extend_with_appends_without_moving_rows() {
        let mut vocab = builder(&["a a b"]).build(1, 10);
        assert_eq!(keys(&vocab), ["a", "b"]);
        let more = builder(&["c b c d e", "c d e"]);
        let added = vocab.extend_with(more.clone(), 2, 2);
        assert_eq!(added, 2);
        // b is already present; c:3, then d and e tie at 2 → d by key.
        assert_eq!(keys(&vocab), ["a", "b", "c", "d"]);
        assert_eq!(vocab.row(unigram_id("a")), Some(0));
        assert_eq!(vocab.row(unigram_id("b")), Some(1));
        assert_eq!(vocab.row(unigram_id("d")), Some(3));
        assert_eq!(vocab.extend_with(more, 2, 10), 1);
        assert_eq!(keys(&vocab), ["a", "b", "c", "d", "e"]);
    }
}
