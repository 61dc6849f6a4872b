//! Model artifacts on disk: `manifest.json`, `vocab.txt` and `model.bpk` (burnpack weights).
//!
//! The manifest names everything needed to rebuild the classifier and the sha256 of every other
//! file, so a copied, truncated or mismatched file is caught at load time with a message that
//! names the file and the problem. Saving writes into a temporary sibling directory, fsyncs it
//! and renames it into place, so a crash never leaves a half-written model that a server loads.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::network::{NetworkConfig, TextClassifier};
use crate::text::{Tokenizer, TokenizerConfig, Vocab};

/// What `manifest.json` says it is.
pub const FORMAT: &str = "textclf-model";
/// The manifest layout this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const VOCAB_FILE: &str = "vocab.txt";
pub const WEIGHTS_FILE: &str = "model.bpk";

/// Per-class precision/recall/F1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// An evaluation of a model on a labelled data set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Which data (file names or a description).
    pub data: String,
    pub examples: u64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[gold][predicted]`, in label order.
    pub confusion: Vec<Vec<u64>>,
}

/// How the model was trained: enough to rerun it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainingInfo {
    pub train_data: Vec<String>,
    pub train_examples: u64,
    pub validation_data: Option<String>,
    pub epochs_run: u32,
    pub best_epoch: u32,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub seed: u64,
    pub min_count: u64,
    pub seconds: f64,
    /// The base model this one was fine-tuned from, as `name@version`.
    pub base_model: Option<String>,
    /// The command line that produced the model, when trained from the CLI.
    pub command: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub name: String,
    pub version: u32,
    /// Labels in output order.
    pub labels: Vec<String>,
    pub tokenizer: TokenizerConfig,
    pub network: NetworkConfig,
    pub training: TrainingInfo,
    /// Evaluations (validation, test) made when the model was trained.
    pub metrics: BTreeMap<String, Evaluation>,
    pub created_at: DateTime<Utc>,
    /// sha256 and size of each other file in the directory.
    pub files: BTreeMap<String, FileEntry>,
}

/// A model loaded and ready for inference.
#[derive(Debug)]
pub struct LoadedModel {
    pub manifest: Manifest,
    pub tokenizer: Tokenizer,
    pub vocab: Vocab,
    pub network: TextClassifier,
    pub dir: PathBuf,
    /// Host copy of the embedding table for inference, made on first use (see `inference.rs`).
    pub host_table: crate::model::inference::HostTable,
}

/// Why a model directory could not be loaded or saved. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: file is missing")]
    Missing { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid manifest: {message}")]
    BadManifest { path: PathBuf, message: String },
    #[error(
        "{path}: unsupported model format version {found} (this build reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("{path}: checksum mismatch: manifest says sha256 {expected}, file has {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path}: {message}")]
    Inconsistent { path: PathBuf, message: String },
    #[error("{path}: cannot read weights: {message}")]
    Weights { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ArtifactError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            ArtifactError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl LoadedModel {
    /// Loads and validates a model directory.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ArtifactError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let raw = fs::read(&manifest_path).map_err(io_err(&manifest_path))?;
        let manifest = parse_manifest(&manifest_path, &raw)?;

        let vocab_path = dir.join(VOCAB_FILE);
        let vocab_bytes = read_checked(&manifest, &vocab_path, VOCAB_FILE)?;
        let vocab = Vocab::from_bytes(&vocab_bytes).map_err(|e| ArtifactError::Inconsistent {
            path: vocab_path.clone(),
            message: e.to_string(),
        })?;
        if vocab.len().max(1) != manifest.network.vocab_size {
            return Err(ArtifactError::Inconsistent {
                path: vocab_path,
                message: format!(
                    "vocabulary has {} rows but the manifest's network.vocab_size is {}",
                    vocab.len(),
                    manifest.network.vocab_size
                ),
            });
        }

        let weights_path = dir.join(WEIGHTS_FILE);
        let weights = read_checked(&manifest, &weights_path, WEIGHTS_FILE)?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(weights)).map_err(|e| {
            ArtifactError::Weights {
                path: weights_path.clone(),
                message: format!("{e:?}"),
            }
        })?;
        let skeleton = TextClassifier::init(&manifest.network, 0, device);
        let network = skeleton
            .try_load_record(record)
            .map_err(|e| ArtifactError::Weights {
                path: weights_path.clone(),
                message: format!("{e:?}"),
            })?;
        if network.config() != manifest.network {
            return Err(ArtifactError::Inconsistent {
                path: weights_path,
                message: format!(
                    "weights have shape {:?}, manifest says {:?}",
                    network.config(),
                    manifest.network
                ),
            });
        }
        Ok(LoadedModel {
            tokenizer: Tokenizer::new(manifest.tokenizer.clone()),
            manifest,
            vocab,
            network: network.valid(),
            dir: dir.to_path_buf(),
            host_table: Default::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn version(&self) -> u32 {
        self.manifest.version
    }

    pub fn labels(&self) -> &[String] {
        &self.manifest.labels
    }
}

fn parse_manifest(path: &Path, raw: &[u8]) -> Result<Manifest, ArtifactError> {
    let bad = |message: String| ArtifactError::BadManifest {
        path: path.to_path_buf(),
        message,
    };
    // Check the format fields first so an old/new layout gets the right message, not a serde one.
    let value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| bad(format!("not JSON: {e}")))?;
    if value.get("format").and_then(|v| v.as_str()) != Some(FORMAT) {
        return Err(bad(format!("\"format\" must be \"{FORMAT}\"")));
    }
    let version = value
        .get("format_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| bad("\"format_version\" is missing".into()))?;
    if version != FORMAT_VERSION as u64 {
        return Err(ArtifactError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version as u32,
        });
    }
    let manifest: Manifest = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    if manifest.labels.len() != manifest.network.num_classes {
        return Err(bad(format!(
            "{} labels but the network has {} outputs",
            manifest.labels.len(),
            manifest.network.num_classes
        )));
    }
    if manifest.labels.len() < 2 {
        return Err(bad("a classifier needs at least 2 labels".into()));
    }
    Ok(manifest)
}

fn read_checked(manifest: &Manifest, path: &Path, file: &str) -> Result<Vec<u8>, ArtifactError> {
    let entry = manifest
        .files
        .get(file)
        .ok_or_else(|| ArtifactError::BadManifest {
            path: path.with_file_name(MANIFEST_FILE),
            message: format!("no checksum entry for {file}"),
        })?;
    let bytes = fs::read(path).map_err(io_err(path))?;
    let actual = sha256_hex(&bytes);
    if actual != entry.sha256 {
        return Err(ArtifactError::Checksum {
            path: path.to_path_buf(),
            expected: entry.sha256.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// Everything a model directory is written from.
pub struct ModelParts<'a> {
    pub manifest: Manifest,
    pub vocab: &'a Vocab,
    pub network: TextClassifier,
}

/// Writes a model directory atomically: into `<dir>.tmp-<pid>`, fsynced, then renamed to `dir`.
/// Fails if `dir` exists (versions are immutable). Returns the manifest as written.
pub fn save(dir: &Path, parts: ModelParts<'_>) -> Result<Manifest, ArtifactError> {
    if dir.exists() {
        return Err(ArtifactError::Inconsistent {
            path: dir.to_path_buf(),
            message: "already exists; model versions are immutable".into(),
        });
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let file_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let tmp = parent.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;

    let ModelParts {
        mut manifest,
        vocab,
        network,
    } = parts;
    manifest.network = network.config();
    let vocab_bytes = vocab.to_bytes();
    let weights = network
        .into_record()
        .into_bytes()
        .map_err(|e| ArtifactError::Weights {
            path: tmp.join(WEIGHTS_FILE),
            message: format!("{e:?}"),
        })?
        .to_vec();
    manifest.files.clear();
    for (name, bytes) in [(VOCAB_FILE, &vocab_bytes), (WEIGHTS_FILE, &weights)] {
        write_synced(&tmp.join(name), bytes)?;
        manifest.files.insert(
            name.to_string(),
            FileEntry {
                sha256: sha256_hex(bytes),
                bytes: bytes.len() as u64,
            },
        );
    }
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises. This is a bug.");
    write_synced(&tmp.join(MANIFEST_FILE), &json)?;
    fsync_dir(&tmp)?;
    fs::rename(&tmp, dir).map_err(io_err(dir))?;
    fsync_dir(parent)?;
    Ok(manifest)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    let mut f = fs::File::create(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn fsync_dir(path: &Path) -> Result<(), ArtifactError> {
    fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}
