//! Text → features → embedding rows.
//!
//! # Design
//!
//! The classifier is fastText-style: a text is a bag of unigram and bigram
//! features whose embeddings are averaged. This module turns text into the
//! row indices of that embedding table, in two steps.
//!
//! 1. [`Tokenizer`] normalises (NFKC + lowercase), splits CJK text into
//!    single chars and everything else into UAX#29 words, folds long digit
//!    runs into `<numN>` shapes, and emits each unit and each pair of
//!    consecutive units as a [`Feature`]. A feature's id is a stable 64-bit
//!    xxh3 hash of its key with a fixed seed, so tokenising allocates nothing
//!    per feature and gives the same ids on every run, platform and thread.
//!    Each feature also carries the byte span of the *original* text it came
//!    from, so predictions can be explained by pointing at the input.
//!    Scanning stops at `max_tokens` features, so a huge request costs no
//!    more than a small one.
//! 2. [`Vocab`] maps the ids that matter to dense rows `0..len`. Unlike
//!    fastText's hashing trick (ids modulo a fixed number of buckets) there
//!    are no collisions between features, and the table only holds features
//!    seen at least `min_count` times while training, which keeps the
//!    embedding table small: the shipped Chinese model must stay under
//!    20 MB. Features missing from the vocabulary are simply dropped.
//!
//! Fine-tuning a base model on new text uses [`Vocab::extend_with`], which
//! appends rows for new frequent features and never moves existing rows, so
//! the base embedding table stays valid and only grows at its end.

mod tokenizer;
mod vocab;

pub use tokenizer::{
    FEATURE_SEED, Feature, Tokenizer, TokenizerConfig, Tokens, bigram_id, unigram_id,
};
pub use vocab::{Encoded, LineProblem, Vocab, VocabBuilder, VocabError};
