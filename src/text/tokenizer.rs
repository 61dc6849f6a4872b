//! Text → hashed features.
//!
//! The tokenizer streams over the input once: each original char (plus any
//! combining marks that follow it) is NFKC-normalised and lowercased on its
//! own, so every normalised char still knows the byte range of the original
//! text it came from. CJK chars become units immediately; everything else is
//! buffered until whitespace or a CJK char and then split with UAX#29 word
//! boundaries. Units and bigrams are emitted in text order and scanning stops
//! as soon as `max_tokens` features exist, so a huge input costs no more than
//! its first few hundred units.

use std::fmt::Write as _;
use std::mem;
use std::ops::ControlFlow::{self, Break, Continue};

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::{canonical_combining_class, is_combining_mark};
use unicode_segmentation::UnicodeSegmentation;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Seed of every feature hash ("textclf1" in ASCII). Changing it (or the key
/// scheme) invalidates every shipped vocabulary, which the golden test guards.
pub const FEATURE_SEED: u64 = 0x7465_7874_636c_6631;

/// First byte of a unigram key, so a unit can never hash like a bigram.
const UNIGRAM_TAG: u8 = b'u';
/// First byte of a bigram key.
const BIGRAM_TAG: u8 = b'b';
/// Separator between the two units of a bigram key (ASCII unit separator,
/// which never survives into a unit because it is a control char).
const BIGRAM_SEP: u8 = 0x1F;

/// Digit runs longer than this become a `<numN>` shape unit: phone numbers
/// and ids would otherwise each be a distinct, useless feature.
const MAX_LITERAL_DIGITS: usize = 4;
/// Bound on how many non-starters join one normalisation chunk, so a flood
/// of combining marks cannot build an unbounded chunk (cf. UAX#15 stream-safe
/// text, which uses 30).
const MAX_CHUNK_CHARS: usize = 32;
/// Once the pending word buffer reaches this many bytes it is segmented early,
/// keeping memory and work bounded on input without whitespace.
const WORD_BUFFER_CAP: usize = 256;

/// Tokenizer settings; they are part of a model, so they are serialisable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenizerConfig {
    /// Maximum number of features (unigrams + bigrams) per text.
    pub max_tokens: usize,
    /// Whether to emit a bigram for each pair of consecutive units.
    pub bigrams: bool,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            bigrams: true,
        }
    }
}

/// One feature of a text: its stable id and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feature {
    /// Stable 64-bit hash of the feature key (see [`unigram_id`], [`bigram_id`]).
    pub id: u64,
    /// Byte offset into the original (un-normalised) text, on a char boundary.
    pub start: usize,
    /// Byte offset into the original text, on a char boundary; `start < end`.
    pub end: usize,
}

/// The features of a text, in emission order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Features in text order: unit, unit, bigram, unit, bigram, ...
    pub features: Vec<Feature>,
    /// True iff features were dropped because of `max_tokens`.
    pub truncated: bool,
}

/// Turns text into hashed unigram/bigram features; cheap to clone and share.
#[derive(Clone, Debug, Default)]
pub struct Tokenizer {
    config: TokenizerConfig,
}

impl Tokenizer {
    /// Creates a tokenizer with the given settings.
    pub fn new(config: TokenizerConfig) -> Self {
        Self { config }
    }

    /// The settings this tokenizer was built with.
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    /// Tokenises `text` without allocating per feature (serving hot path).
    pub fn tokenize(&self, text: &str) -> Tokens {
        self.scan(text, None).0
    }

    /// Same features as [`Tokenizer::tokenize`], plus a human-readable key per
    /// feature (a unit as is, a bigram as `"a b"`); used to write vocab files.
    pub fn tokenize_with_keys(&self, text: &str) -> (Tokens, Vec<String>) {
        let mut keys = Vec::new();
        let tokens = self.scan(text, Some(&mut keys)).0;
        (tokens, keys)
    }

    /// Runs the scanner; also returns how many input bytes were looked at,
    /// which tests use to prove that scanning stops early.
    fn scan(&self, text: &str, keys: Option<&mut Vec<String>>) -> (Tokens, usize) {
        let mut scanner = Scanner::new(&self.config, keys);
        // Capacity hint only: typical text yields at most two features per byte.
        let expected = self.config.max_tokens.min(text.len().saturating_mul(2));
        scanner.out.features.reserve(expected);
        let scanned = match for_each_normalized(text, |c, start, end| scanner.feed(c, start, end)) {
            Continue(()) => {
                // A Break here only means the limit was hit on the last word.
                let _ = scanner.flush_word(false);
                text.len()
            }
            Break(stopped_at) => stopped_at,
        };
        (scanner.out, scanned)
    }
}

/// Id of a unigram feature: xxh3 of `b'u' + unit`, with [`FEATURE_SEED`].
pub fn unigram_id(unit: &str) -> u64 {
    hash_key(&mut Vec::new(), UNIGRAM_TAG, unit, None)
}

/// Id of a bigram feature: xxh3 of `b'b' + first + 0x1F + second`, with
/// [`FEATURE_SEED`].
pub fn bigram_id(first: &str, second: &str) -> u64 {
    hash_key(&mut Vec::new(), BIGRAM_TAG, first, Some(second))
}

/// Hashes a feature key built in `scratch`, which callers reuse so that the
/// hot path allocates nothing per feature.
fn hash_key(scratch: &mut Vec<u8>, tag: u8, first: &str, second: Option<&str>) -> u64 {
    scratch.clear();
    scratch.push(tag);
    scratch.extend_from_slice(first.as_bytes());
    if let Some(second) = second {
        scratch.push(BIGRAM_SEP);
        scratch.extend_from_slice(second.as_bytes());
    }
    xxh3_64_with_seed(scratch, FEATURE_SEED)
}

/// Calls `emit(c, start, end)` for every char of NFKC + lowercase of `text`,
/// where `start..end` is the original byte range the char came from.
/// Returns `Break(offset)` with the end of the last chunk read when `emit`
/// stops early, so nothing after the limit is normalised.
fn for_each_normalized<F>(text: &str, mut emit: F) -> ControlFlow<usize>
where
    F: FnMut(char, usize, usize) -> ControlFlow<()>,
{
    let bytes = text.as_bytes();
    let mut pos = 0;
    while let Some(&byte) = bytes.get(pos) {
        // Fast path: ASCII is NFKC-stable; only a following non-ASCII char
        // (maybe a combining mark) could change it.
        if byte.is_ascii() && bytes.get(pos + 1).is_none_or(u8::is_ascii) {
            let end = pos + 1;
            if emit(char::from(byte.to_ascii_lowercase()), pos, end).is_break() {
                return Break(end);
            }
            pos = end;
            continue;
        }
        let end = chunk_end(text, pos);
        let chunk = text.get(pos..end).unwrap_or_default();
        for c in chunk.nfkc().flat_map(char::to_lowercase) {
            if emit(c, pos, end).is_break() {
                return Break(end);
            }
        }
        pos = end;
    }
    Continue(())
}

/// End of the normalisation chunk starting at `start`: one char plus the
/// chars that may compose with it, so NFKC per chunk equals NFKC of the text
/// in all but pathological cases.
fn chunk_end(text: &str, start: usize) -> usize {
    let rest = text.get(start..).unwrap_or_default();
    let mut chars = rest.char_indices();
    let Some((_, first)) = chars.next() else {
        return text.len();
    };
    let mut end = start + first.len_utf8();
    for (count, (offset, c)) in chars.enumerate() {
        if count >= MAX_CHUNK_CHARS || !continues_chunk(c) {
            break;
        }
        end = start + offset + c.len_utf8();
    }
    end
}

/// Chars that attach to the previous one under normalisation: combining
/// marks and Hangul medial/final jamo (which compose into syllables).
fn continues_chunk(c: char) -> bool {
    !c.is_ascii()
        && (is_combining_mark(c)
            || canonical_combining_class(c) != 0
            || matches!(c as u32, 0x1160..=0x11FF | 0xD7B0..=0xD7FF))
}

/// Chars that form one unit each: languages written without spaces.
/// Hangul is deliberately absent: Korean separates words with spaces.
fn is_cjk_unit(c: char) -> bool {
    matches!(c as u32,
        0x2E80..=0x2FDF       // CJK Radicals Supplement, Kangxi Radicals
        | 0x3005..=0x3007     // 々 〆 〇
        | 0x3021..=0x3029     // Hangzhou numerals
        | 0x3038..=0x303B     // more ideographic numerals, 〻
        | 0x3041..=0x3096     // Hiragana
        | 0x309D..=0x309F
        | 0x30A1..=0x30FA     // Katakana (without ゠ and the middle dot ・)
        | 0x30FC..=0x30FF
        | 0x3100..=0x312F     // Bopomofo
        | 0x31A0..=0x31FF     // Bopomofo Extended, CJK Strokes, Katakana Ext.
        | 0x3400..=0x4DBF     // CJK Extension A
        | 0x4E00..=0x9FFF     // CJK Unified Ideographs
        | 0xF900..=0xFAFF     // CJK Compatibility Ideographs
        | 0x1AFF0..=0x1B16F   // Kana Extended-B, Supplement, Extended-A, Small
        | 0x20000..=0x323AF // CJK Extensions B–H, Compatibility Supplement
    )
}

/// Punctuation that never makes a unit on its own.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32,
            0x00A1 | 0x00A7 | 0x00AB | 0x00B6 | 0x00B7 | 0x00BB | 0x00BF
            | 0x055A..=0x055F | 0x0589 | 0x060C | 0x061B | 0x061F | 0x066A..=0x066D
            | 0x06D4 | 0x0964 | 0x0965 | 0x0E4F | 0x0E5A | 0x0E5B
            | 0x2000..=0x206F     // General Punctuation
            | 0x2E00..=0x2E7F     // Supplemental Punctuation
            | 0x3000..=0x303F     // CJK Symbols and Punctuation
            | 0x30A0 | 0x30FB
            | 0xFE10..=0xFE1F     // Vertical Forms
            | 0xFE30..=0xFE6F     // CJK Compatibility Forms, Small Form Variants
            | 0xFF01..=0xFF0F     // fullwidth / halfwidth punctuation
            | 0xFF1A..=0xFF20
            | 0xFF3B..=0xFF40
            | 0xFF5B..=0xFF65
        )
}

/// Chars that carry no meaning on their own: whitespace, controls, marks and
/// format chars (soft hyphen, BOM, tags, ...).
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || is_combining_mark(c)
        || matches!(c as u32,
            0x00AD | 0x061C | 0x180E | 0xFEFF | 0xFFF9..=0xFFFB
            | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE007F
        )
}

/// A word segment becomes a unit if it has a letter or digit, or a symbol
/// such as an emoji; whitespace- and punctuation-only segments are dropped.
fn keeps_segment(segment: &str) -> bool {
    segment
        .chars()
        .any(|c| c.is_alphanumeric() || !(is_invisible(c) || is_punctuation(c)))
}

/// Digit count of a segment that should become a `<numN>` shape unit.
fn long_number_digits(segment: &str) -> Option<usize> {
    (segment.len() > MAX_LITERAL_DIGITS && segment.bytes().all(|b| b.is_ascii_digit()))
        .then_some(segment.len())
}

/// Per-call state of one tokenisation; all buffers are reused across units.
struct Scanner<'k> {
    bigrams: bool,
    max_tokens: usize,
    out: Tokens,
    keys: Option<&'k mut Vec<String>>,
    /// Normalised non-CJK text not yet split into words.
    word: String,
    /// Original byte range for every byte of `word`.
    word_spans: Vec<(usize, usize)>,
    /// Start offsets of the UAX#29 segments of `word` (scratch).
    seg_starts: Vec<usize>,
    /// Key and start offset of the previous unit, for the next bigram.
    prev: String,
    prev_start: Option<usize>,
    hash_buf: Vec<u8>,
    shape_buf: String,
}

impl<'k> Scanner<'k> {
    fn new(config: &TokenizerConfig, keys: Option<&'k mut Vec<String>>) -> Self {
        Self {
            bigrams: config.bigrams,
            max_tokens: config.max_tokens,
            out: Tokens::default(),
            keys,
            word: String::new(),
            word_spans: Vec::new(),
            seg_starts: Vec::new(),
            prev: String::new(),
            prev_start: None,
            hash_buf: Vec::new(),
            shape_buf: String::new(),
        }
    }

    /// Consumes one normalised char; `Break` once the feature limit is hit.
    fn feed(&mut self, c: char, start: usize, end: usize) -> ControlFlow<()> {
        if is_cjk_unit(c) {
            self.flush_word(false)?;
            let mut utf8 = [0u8; 4];
            return self.unit(c.encode_utf8(&mut utf8), start, end);
        }
        if c.is_whitespace() {
            // UAX#29 always breaks around whitespace, so it ends the buffer.
            return self.flush_word(false);
        }
        self.word.push(c);
        self.word_spans
            .extend(std::iter::repeat_n((start, end), c.len_utf8()));
        if self.word.len() >= WORD_BUFFER_CAP {
            self.flush_word(true)?;
        }
        Continue(())
    }

    /// Splits the buffered text into words and emits them. A `partial` flush
    /// keeps the last two segments buffered, because the chars still to come
    /// may join them into one word (e.g. "a" "." + "b" → "a.b").
    fn flush_word(&mut self, partial: bool) -> ControlFlow<()> {
        if self.word.is_empty() {
            return Continue(());
        }
        let mut word = mem::take(&mut self.word);
        let mut spans = mem::take(&mut self.word_spans);
        let mut starts = mem::take(&mut self.seg_starts);
        starts.clear();
        starts.extend(word.split_word_bound_indices().map(|(i, _)| i));
        let keep_from = match (partial, starts.len()) {
            (false, n) | (true, n @ 0..=1) => n,
            (true, n) => (n - 2).max(1),
        };
        let emit_until = starts.get(keep_from).copied().unwrap_or(word.len());
        let mut flow = Continue(());
        for (i, &seg_start) in starts.iter().enumerate().take(keep_from) {
            let seg_end = starts.get(i + 1).copied().unwrap_or(word.len());
            let segment = word.get(seg_start..seg_end).unwrap_or_default();
            let (start, end) = (spans[seg_start].0, spans[seg_end - 1].1);
            flow = self.segment(segment, start, end);
            if flow.is_break() {
                break;
            }
        }
        word.drain(..emit_until);
        spans.drain(..emit_until);
        self.word = word;
        self.word_spans = spans;
        self.seg_starts = starts;
        flow
    }

    /// Turns one word segment into a unit, a number shape, or nothing.
    fn segment(&mut self, segment: &str, start: usize, end: usize) -> ControlFlow<()> {
        if let Some(digits) = long_number_digits(segment) {
            let mut shape = mem::take(&mut self.shape_buf);
            shape.clear();
            // Writing to a String cannot fail.
            let _ = write!(shape, "<num{digits}>");
            let flow = self.unit(&shape, start, end);
            self.shape_buf = shape;
            flow
        } else if keeps_segment(segment) {
            self.unit(segment, start, end)
        } else {
            Continue(())
        }
    }

    /// Emits a unit's unigram and its bigram with the previous unit.
    fn unit(&mut self, key: &str, start: usize, end: usize) -> ControlFlow<()> {
        let id = hash_key(&mut self.hash_buf, UNIGRAM_TAG, key, None);
        self.push(Feature { id, start, end })?;
        if let Some(keys) = self.keys.as_deref_mut() {
            keys.push(key.to_owned());
        }
        if self.bigrams
            && let Some(prev_start) = self.prev_start
        {
            let id = hash_key(&mut self.hash_buf, BIGRAM_TAG, &self.prev, Some(key));
            self.push(Feature {
                id,
                start: prev_start,
                end,
            })?;
            if let Some(keys) = self.keys.as_deref_mut() {
                keys.push(format!("{} {key}", self.prev));
            }
        }
        self.prev.clear();
        self.prev.push_str(key);
        self.prev_start = Some(start);
        Continue(())
    }

    /// Appends a feature, or records truncation and stops at the limit.
    fn push(&mut self, feature: Feature) -> ControlFlow<()> {
        if self.out.features.len() >= self.max_tokens {
            self.out.truncated = true;
            return Break(());
        }
        self.out.features.push(feature);
        Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer(max_tokens: usize, bigrams: bool) -> Tokenizer {
        Tokenizer::new(TokenizerConfig {
            max_tokens,
            bigrams,
        })
    }

    /// Original-text substrings of the features.
    fn spans<'t>(text: &'t str, tokens: &Tokens) -> Vec<&'t str> {
        tokens
            .features
            .iter()
            .map(|f| &text[f.start..f.end])
            .collect()
    }

    /// The exact interleaved feature sequence expected for `units`, given
    /// as (normalised key, original start, original end).
    fn expected(units: &[(&str, usize, usize)], bigrams: bool) -> Vec<Feature> {
        let mut out = Vec::new();
        for (i, &(key, start, end)) in units.iter().enumerate() {
            out.push(Feature {
                id: unigram_id(key),
                start,
                end,
            });
            if let Some(&(prev, prev_start, _)) = i.checked_sub(1).and_then(|p| units.get(p))
                && bigrams
            {
                let id = bigram_id(prev, key);
                out.push(Feature {
                    id,
                    start: prev_start,
                    end,
                });
            }
        }
        out
    }

    #[test]
    fn chinese_chars_are_units_with_interleaved_bigrams() {
        let text = "湖人击败勇士";
        let tokens = tokenizer(256, true).tokenize(text);
        assert!(!tokens.truncated);
        assert_eq!(tokens.features.len(), 11);
        assert_eq!(
            spans(text, &tokens),
            [
                "湖", "人", "湖人", "击", "人击", "败", "击败", "勇", "败勇", "士", "勇士"
            ]
        );
        let units = [
            ("湖", 0, 3),
            ("人", 3, 6),
            ("击", 6, 9),
            ("败", 9, 12),
            ("勇", 12, 15),
            ("士", 15, 18),
        ];
        assert_eq!(tokens.features, expected(&units, true));
        assert_eq!(tokens.features[2].id, bigram_id("湖", "人"));
    }

    #[test]
    fn english_words_are_lowercased_and_punctuation_dropped() {
        let text = "The Lakers beat the Warriors!";
        let (tokens, keys) = tokenizer(256, true).tokenize_with_keys(text);
        let units = [
            ("the", 0, 3),
            ("lakers", 4, 10),
            ("beat", 11, 15),
            ("the", 16, 19),
            ("warriors", 20, 28),
        ];
        assert_eq!(tokens.features, expected(&units, true));
        assert_eq!(tokens.features.len(), 9);
        assert_eq!(tokens.features[0].id, tokens.features[5].id);
        assert_eq!(
            &text[tokens.features[5].start..tokens.features[5].end],
            "the"
        );
        assert_eq!(
            keys,
            [
                "the",
                "lakers",
                "the lakers",
                "beat",
                "lakers beat",
                "the",
                "beat the",
                "warriors",
                "the warriors"
            ]
        );
    }

    #[test]
    fn mixed_latin_digits_and_cjk() {
        let text = "iPhone 15发布会";
        let (tokens, keys) = tokenizer(256, true).tokenize_with_keys(text);
        let units = [
            ("iphone", 0, 6),
            ("15", 7, 9),
            ("发", 9, 12),
            ("布", 12, 15),
            ("会", 15, 18),
        ];
        assert_eq!(tokens.features, expected(&units, true));
        assert_eq!(
            spans(text, &tokens),
            [
                "iPhone",
                "15",
                "iPhone 15",
                "发",
                "15发",
                "布",
                "发布",
                "会",
                "布会"
            ]
        );
        assert_eq!(keys[4], "15 发");
    }

    #[test]
    fn nfkc_fullwidth_matches_ascii_and_offsets_stay_original() {
        let full = "ＡＢＣ１２３";
        let tok = tokenizer(256, true);
        let a = tok.tokenize(full);
        let b = tok.tokenize("abc123");
        let ids = |t: &Tokens| t.features.iter().map(|f| f.id).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(ids(&a), [unigram_id("abc123")]);
        assert_eq!((a.features[0].start, a.features[0].end), (0, full.len()));
        assert_eq!(full.len(), 18);
    }

    #[test]
    fn composition_ligatures_and_expansions_map_back() {
        let tok = tokenizer(256, false);
        // e + combining acute composes to é inside one chunk.
        let t = tok.tokenize("cafe\u{301}!");
        assert_eq!(
            t.features,
            [Feature {
                id: unigram_id("café"),
                start: 0,
                end: 6
            }]
        );
        // ﬁ expands to "fi" and joins the following ASCII into one word.
        let t = tok.tokenize("ﬁle");
        assert_eq!(
            t.features,
            [Feature {
                id: unigram_id("file"),
                start: 0,
                end: 5
            }]
        );
        // ㍻ expands to two CJK chars that both point at the one original char.
        let t = tok.tokenize("㍻");
        assert_eq!(
            t.features,
            [
                Feature {
                    id: unigram_id("平"),
                    start: 0,
                    end: 3
                },
                Feature {
                    id: unigram_id("成"),
                    start: 0,
                    end: 3
                }
            ]
        );
    }

    #[test]
    fn emoji_are_kept_as_units() {
        let text = "great 😀😀";
        let (tokens, keys) = tokenizer(256, true).tokenize_with_keys(text);
        assert_eq!(keys, ["great", "😀", "great 😀", "😀", "😀 😀"]);
        assert_eq!(
            spans(text, &tokens),
            ["great", "😀", "great 😀", "😀", "😀😀"]
        );
        assert_eq!(tokens.features[1].id, unigram_id("😀"));
        let (_, keys) = tokenizer(256, false).tokenize_with_keys("i ❤ rust");
        assert_eq!(keys, ["i", "❤", "rust"]);
    }

    #[test]
    fn korean_is_split_into_words_not_chars() {
        let (_, keys) = tokenizer(256, false).tokenize_with_keys("안녕하세요 세계");
        assert_eq!(keys, ["안녕하세요", "세계"]);
    }

    #[test]
    fn empty_whitespace_and_punctuation_give_nothing() {
        let tok = tokenizer(256, true);
        for text in ["", "  \t\n ", "！？。，", "...!?", "「」、・"] {
            assert_eq!(tok.tokenize(text), Tokens::default(), "{text:?}");
        }
    }

    #[test]
    fn long_numbers_become_shapes() {
        let text = "call 09061701461 now 2012";
        let (tokens, keys) = tokenizer(256, false).tokenize_with_keys(text);
        assert_eq!(keys, ["call", "<num11>", "now", "2012"]);
        assert_eq!(tokens.features[1].id, unigram_id("<num11>"));
        assert_eq!(spans(text, &tokens), ["call", "09061701461", "now", "2012"]);
        let (_, keys) = tokenizer(256, false).tokenize_with_keys("12345 1234");
        assert_eq!(keys, ["<num5>", "1234"]);
    }

    #[test]
    fn limit_cuts_from_the_tail() {
        let text = "湖人击败勇士";
        let full = tokenizer(11, true).tokenize(text);
        assert_eq!(full.features.len(), 11);
        assert!(!full.truncated);
        for max in 0..11 {
            let cut = tokenizer(max, true).tokenize(text);
            assert!(cut.truncated);
            assert_eq!(cut.features, full.features[..max]);
        }
        let no_bigrams = tokenizer(256, false).tokenize(text);
        assert_eq!(no_bigrams.features.len(), 6);
        assert_eq!(tokenizer(0, true).tokenize(""), Tokens::default());
    }

    #[test]
    fn megabyte_input_stops_scanning_at_the_limit() {
        let piece = "湖人击败勇士 The Lakers beat the Warriors 2012! ";
        let text = piece.repeat(1_000_000 / piece.len() + 1);
        assert!(text.len() >= 1_000_000);
        let tok = tokenizer(256, true);
        let (tokens, scanned) = tok.scan(&text, None);
        assert_eq!(tokens.features.len(), 256);
        assert!(tokens.truncated);
        // 256 features need about 128 units, a few pieces of the input.
        assert!(scanned < 2_000, "scanned {scanned} bytes");
        assert_eq!(tok.tokenize(&text), tokens);
        // Without whitespace the word buffer must still stop early.
        let blob = "ab.".repeat(400_000);
        let (tokens, scanned) = tok.scan(&blob, None);
        assert_eq!(tokens.features.len(), 256);
        assert!(scanned < 100_000, "scanned {scanned} bytes");
    }

    #[test]
    fn golden_ids_never_change() {
        // Values cross-checked against the reference xxh3 (Python `xxhash`
        // 4.1: xxh3_64_intdigest(b"u" + "体".encode(), seed=FEATURE_SEED)).
        assert_eq!(unigram_id("体"), 17_516_608_603_754_462_586);
        assert_eq!(bigram_id("体", "育"), 1_231_759_990_365_594_593);
        let tokens = Tokenizer::default().tokenize("体育");
        assert_eq!(tokens.features[0].id, unigram_id("体"));
        assert_eq!(tokens.features[2].id, bigram_id("体", "育"));
    }

    #[test]
    fn config_serde_defaults() {
        let config: TokenizerConfig = serde_json::from_str("{}").expect("valid json");
        assert_eq!(
            config,
            TokenizerConfig {
                max_tokens: 256,
                bigrams: true
            }
        );
        let config: TokenizerConfig =
            serde_json::from_str(r#"{"max_tokens":8,"bigrams":false}"#).expect("valid json");
        assert_eq!(
            config,
            TokenizerConfig {
                max_tokens: 8,
                bigrams: false
            }
        );
    }

    /// Tiny deterministic generator (Knuth's MMIX LCG) for property checks.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn random_text(rng: &mut Lcg) -> String {
        const POOL: &[&str] = &[
            "a",
            "Z",
            "q",
            "7",
            "0",
            " ",
            "\t",
            "\n",
            "\r\n",
            "\0",
            "\u{7}",
            ".",
            ",",
            "'",
            "-",
            "湖",
            "人",
            "体",
            "の",
            "カ",
            "ㄅ",
            "한",
            "\u{1100}",
            "\u{1161}",
            "\u{11A8}",
            "😀",
            "❤",
            "\u{FE0F}",
            "\u{200D}",
            "👍",
            "\u{1F3FD}",
            "🇺",
            "🇸",
            "\u{301}",
            "\u{308}",
            "\u{20DD}",
            "Ａ",
            "１",
            "ﬁ",
            "㍻",
            "㈱",
            "İ",
            "ß",
            "Σ",
            "ǅ",
            "\u{FEFF}",
            "\u{AD}",
            "、",
            "。",
            "！",
            "ｶ",
            "ﾞ",
            "١",
            "ก",
            "\u{E0041}",
            "𠀀",
            "\u{10FFFF}",
            "¼",
            "℃",
        ];
        let len = rng.below(40);
        let mut text = String::new();
        for _ in 0..len {
            if rng.below(8) == 0 {
                let scalar = rng.next() as u32 % 0x11_0000;
                text.extend(char::from_u32(scalar));
            } else {
                text.push_str(POOL[rng.below(POOL.len())]);
            }
        }
        text
    }

    #[test]
    fn random_text_never_panics_and_offsets_are_sound() {
        let mut rng = Lcg(42);
        for _ in 0..500 {
            let text = random_text(&mut rng);
            let max = 1 + rng.below(40);
            let full = tokenizer(usize::MAX, true).tokenize(&text);
            let (tokens, keys) = tokenizer(max, true).tokenize_with_keys(&text);
            assert!(tokens.features.len() <= max, "{text:?}");
            assert_eq!(keys.len(), tokens.features.len());
            assert_eq!(tokens.truncated, full.features.len() > max, "{text:?}");
            assert_eq!(tokens.features, full.features[..tokens.features.len()]);
            assert_eq!(tokenizer(max, true).tokenize(&text), tokens);
            for f in &full.features {
                assert!(f.start < f.end && f.end <= text.len(), "{text:?} {f:?}");
                assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
            }
            for (f, key) in tokens.features.iter().zip(&keys) {
                let expected_id = match key.split_once(' ') {
                    Some((a, b)) => bigram_id(a, b),
                    None => unigram_id(key),
                };
                assert_eq!(f.id, expected_id, "{text:?} {key:?}");
            }
        }
    }
}
