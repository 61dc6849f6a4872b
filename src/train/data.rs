//! Labelled examples from JSONL (`{"text": .., "label": ..}` per line) or CSV (`text,label`
//! header), either optionally gzip-compressed (`.gz`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub text: String,
    pub label: String,
}

/// Why examples could not be read. Carries the 1-based line (or record) number.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{source_name}: {error}")]
    Io {
        source_name: String,
        error: std::io::Error,
    },
    #[error("{source_name}: line {line}: {message}")]
    Line {
        source_name: String,
        line: usize,
        message: String,
    },
    #[error("{source_name}: no examples")]
    Empty { source_name: String },
}

#[derive(Deserialize)]
struct JsonRow {
    text: Option<serde_json::Value>,
    label: Option<serde_json::Value>,
}

fn open(path: &Path) -> Result<Box<dyn Read>, DataError> {
    let file = File::open(path).map_err(|error| DataError::Io {
        source_name: path.display().to_string(),
        error,
    })?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(MultiGzDecoder::new(file)))
    } else {
        Ok(Box::new(file))
    }
}

/// True when the file (ignoring a `.gz` suffix) ends in `.csv`.
fn is_csv(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    name.ends_with(".csv") || name.ends_with(".csv.gz")
}

/// Reads a JSONL or CSV file of examples.
pub fn read_examples(path: &Path) -> Result<Vec<Example>, DataError> {
    let name = path.display().to_string();
    let reader = open(path)?;
    let examples = if is_csv(path) {
        parse_csv(reader, &name)?
    } else {
        parse_jsonl(BufReader::new(reader), &name)?
    };
    if examples.is_empty() {
        return Err(DataError::Empty { source_name: name });
    }
    Ok(examples)
}

/// Parses JSONL; blank lines are skipped; each other line must be an object with non-empty
/// string `text` and `label` (a number label is accepted and turned into its decimal string).
pub fn parse_jsonl(reader: impl BufRead, source_name: &str) -> Result<Vec<Example>, DataError> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|error| DataError::Io {
            source_name: source_name.into(),
            error,
        })?;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let err = |message: String| DataError::Line {
            source_name: source_name.into(),
            line: line_no,
            message,
        };
        let row: JsonRow =
            serde_json::from_str(trimmed).map_err(|e| err(format!("not a JSON object: {e}")))?;
        let text = match row.text {
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err(err("\"text\" must be a string".into())),
            None => return Err(err("missing \"text\"".into())),
        };
        let label = match row.label {
            Some(serde_json::Value::String(s)) => s,
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(_) => return Err(err("\"label\" must be a string".into())),
            None => return Err(err("missing \"label\"".into())),
        };
        out.push(validate(text, label).map_err(err)?);
    }
    Ok(out)
}

/// Parses CSV with a header naming `text` and `label` columns (any order, other columns ignored).
pub fn parse_csv(reader: impl Read, source_name: &str) -> Result<Vec<Example>, DataError> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let header_err = |message: String| DataError::Line {
        source_name: source_name.into(),
        line: 1,
        message,
    };
    let headers = rdr
        .headers()
        .map_err(|e| header_err(e.to_string()))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let (Some(ti), Some(li)) = (col("text"), col("label")) else {
        return Err(header_err(
            "the header must name a \"text\" and a \"label\" column".into(),
        ));
    };
    let mut out = Vec::new();
    for record in rdr.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
            DataError::Line {
                source_name: source_name.into(),
                line,
                message: e.to_string(),
            }
        })?;
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        let err = |message: String| DataError::Line {
            source_name: source_name.into(),
            line,
            message,
        };
        let text = record
            .get(ti)
            .ok_or_else(|| err("missing text column".into()))?;
        let label = record
            .get(li)
            .ok_or_else(|| err("missing label column".into()))?;
        out.push(validate(text.to_string(), label.to_string()).map_err(err)?);
    }
    Ok(out)
}

fn validate(text: String, label: String) -> Result<Example, String> {
    if text.trim().is_empty() {
        return Err("\"text\" is empty".into());
    }
    let label = label.trim().to_string();
    if label.is_empty() {
        return Err("\"label\" is empty".into());
    }
    Ok(Example { text, label })
}

/// Reads and concatenates several files.
pub fn read_all(paths: &[impl AsRef<Path>]) -> Result<Vec<Example>, DataError> {
    let mut all = Vec::new();
    for p in paths {
        all.extend(read_examples(p.as_ref())?);
    }
    Ok(all)
}
