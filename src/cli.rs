//! The command line: `serve`, `train`, `eval`, `predict`. Every flag can also come from an
//! environment variable (shown in `--help`).

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::model::artifact::{self, LoadedModel, ModelParts};
use crate::model::backend;
use crate::text::TokenizerConfig;
use crate::train::{self, Observer, TrainConfig, TrainEvent, metrics};

#[derive(Parser, Debug)]
#[command(
    name = "textclf",
    version,
    about = "Text classification service: train, evaluate and serve fastText-style classifiers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the models over HTTP.
    Serve(crate::server::ServeArgs),
    /// Train a model from labelled JSONL/CSV files and write a model directory.
    Train(TrainArgs),
    /// Evaluate a model on a labelled file: accuracy, macro-F1, per-class metrics, confusion matrix.
    Eval(EvalArgs),
    /// Classify texts given as arguments (or one per line on stdin).
    Predict(PredictArgs),
    /// Print (or write) the OpenAPI document generated from the HTTP routes.
    Openapi(OpenapiArgs),
    /// Exit 0 when the local server answers `GET /health/ready` with 200 (the container's
    /// HEALTHCHECK: the runtime image has no curl).
    Healthcheck(HealthcheckArgs),
}

#[derive(Args, Debug)]
pub struct OpenapiArgs {
    /// Write here instead of stdout (e.g. `--out openapi.yaml` to refresh the committed copy).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// JSON instead of YAML.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct HealthcheckArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port the server listens on (the same variable `serve` reads).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Give up after this many milliseconds (connect, send and read together).
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training files (JSONL with "text" and "label", or CSV with a text,label header; .gz allowed). Repeatable.
    #[arg(
        long = "train",
        required = true,
        env = "TEXTCLF_TRAIN",
        value_delimiter = ','
    )]
    pub train: Vec<PathBuf>,
    /// Validation file for early stopping and model selection.
    #[arg(long, env = "TEXTCLF_VALID")]
    pub valid: Option<PathBuf>,
    /// Without --valid: hold out this stratified fraction of the training data for validation (0 = none).
    #[arg(long, env = "TEXTCLF_VALID_SPLIT", default_value_t = 0.0)]
    pub valid_split: f64,
    /// Test file, evaluated once after training; its metrics go into the manifest (never used for selection).
    #[arg(long, env = "TEXTCLF_TEST")]
    pub test: Option<PathBuf>,
    /// Output model directory (must not exist).
    #[arg(long, env = "TEXTCLF_OUT")]
    pub out: PathBuf,
    /// Model name (default: the output directory's name).
    #[arg(long, env = "TEXTCLF_NAME")]
    pub name: Option<String>,
    /// Model version written into the manifest.
    #[arg(long, env = "TEXTCLF_VERSION", default_value_t = 1)]
    pub version: u32,
    #[arg(long, env = "TEXTCLF_EPOCHS", default_value_t = 8)]
    pub epochs: u32,
    #[arg(long = "lr", env = "TEXTCLF_LR", default_value_t = 5e-3)]
    pub learning_rate: f64,
    #[arg(long, env = "TEXTCLF_BATCH_SIZE", default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, env = "TEXTCLF_EMBED_DIM", default_value_t = 48)]
    pub embed_dim: usize,
    #[arg(long, env = "TEXTCLF_HIDDEN_DIM", default_value_t = 64)]
    pub hidden_dim: usize,
    /// Minimum count of a feature in the training data to get an embedding row.
    #[arg(long, env = "TEXTCLF_MIN_COUNT", default_value_t = 2)]
    pub min_count: u64,
    #[arg(long, env = "TEXTCLF_MAX_VOCAB", default_value_t = 200_000)]
    pub max_vocab: usize,
    /// Maximum features per text (longer texts are truncated).
    #[arg(long, env = "TEXTCLF_MAX_TOKENS", default_value_t = 256)]
    pub max_tokens: usize,
    /// Disable bigram features.
    #[arg(long, env = "TEXTCLF_NO_BIGRAMS")]
    pub no_bigrams: bool,
    #[arg(long, env = "TEXTCLF_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Early-stopping patience in epochs (0 = off).
    #[arg(long, env = "TEXTCLF_PATIENCE", default_value_t = 2)]
    pub patience: u32,
    /// Probability of leaving out each feature of a training text (regularisation).
    #[arg(long, env = "TEXTCLF_FEATURE_DROPOUT", default_value_t = 0.5)]
    pub feature_dropout: f64,
    /// Keep the learning rate constant instead of decaying it linearly to zero over the run.
    #[arg(long, env = "TEXTCLF_CONSTANT_LR")]
    pub constant_lr: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model directory.
    #[arg(long, env = "TEXTCLF_MODEL")]
    pub model: PathBuf,
    /// Labelled JSONL/CSV file.
    #[arg(long, env = "TEXTCLF_DATA")]
    pub data: PathBuf,
    /// Texts per forward pass.
    #[arg(long, env = "TEXTCLF_BATCH_SIZE", default_value_t = 256)]
    pub batch_size: usize,
    /// Print the evaluation as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model directory.
    #[arg(long, env = "TEXTCLF_MODEL", default_value = "models/news-zh")]
    pub model: PathBuf,
    /// How many labels to print per text.
    #[arg(long, env = "TEXTCLF_TOP_K", default_value_t = 3)]
    pub top_k: usize,
    /// Texts to classify; without any, one text per line is read from stdin.
    pub texts: Vec<String>,
}

/// Entry point used by `main`.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => crate::server::run(args),
        Command::Train(args) => run_train(args),
        Command::Eval(args) => run_eval(args),
        Command::Predict(args) => run_predict(args),
        Command::Openapi(args) => run_openapi(args),
        Command::Healthcheck(args) => healthcheck(&args),
    }
}

fn run_openapi(args: OpenapiArgs) -> anyhow::Result<()> {
    let doc = if args.json {
        crate::http::openapi::json()
    } else {
        crate::http::openapi::yaml()
    };
    match args.out {
        Some(path) => {
            std::fs::write(&path, doc).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{doc}"),
    }
    Ok(())
}

/// `GET /health/ready` over a plain TCP stream (HTTP/1.0, so the server closes the connection
/// and the whole answer is read to the end); success means status 200.
pub fn healthcheck(args: &HealthcheckArgs) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::{Duration, Instant};

    let deadline = Instant::now() + Duration::from_millis(args.timeout_ms.max(1));
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .context("health check timed out")
    };
    let addr = (args.host.as_str(), args.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}:{}", args.host, args.port))?
        .next()
        .with_context(|| format!("{}:{} resolves to no address", args.host, args.port))?;
    let mut stream = TcpStream::connect_timeout(&addr, left()?)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_write_timeout(Some(left()?))?;
    write!(
        stream,
        "GET /health/ready HTTP/1.0\r\nHost: {}:{}\r\nConnection: close\r\n\r\n",
        args.host, args.port
    )?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(left()?))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e).context(format!("reading the answer from {addr}")),
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or("");
    let status = status_line.split_whitespace().nth(1);
    if status == Some("200") {
        Ok(())
    } else {
        bail!("{addr}/health/ready answered {status_line:?}, not 200")
    }
}

/// Evaluates a loaded model on examples through the serving code path (`LoadedModel::classify`).
pub fn evaluate_model(
    model: &LoadedModel,
    examples: &[train::Example],
    data: &str,
    batch_size: usize,
) -> anyhow::Result<artifact::Evaluation> {
    let device = backend::device();
    let index: std::collections::HashMap<&str, usize> = model
        .labels()
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let mut gold = Vec::with_capacity(examples.len());
    let mut predicted = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch_size.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        for (ex, p) in chunk.iter().zip(model.classify(&texts, &device)) {
            let Some(&g) = index.get(ex.label.as_str()) else {
                bail!(
                    "{data}: label {:?} is not one of the model's labels {:?}",
                    ex.label,
                    model.labels()
                );
            };
            gold.push(g);
            predicted.push(p.best());
        }
    }
    Ok(metrics::evaluate(data, model.labels(), &gold, &predicted))
}

/// A progress bar on stderr (hidden when stderr is not a terminal) plus one log line per epoch.
struct ProgressObserver {
    bar: ProgressBar,
}

impl Observer for ProgressObserver {
    fn on_event(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Started {
                examples,
                valid_examples,
                vocab_size,
                labels,
                total_steps,
            } => {
                eprintln!(
                    "training on {examples} examples ({valid_examples} validation), {} labels, vocabulary {vocab_size} rows, {total_steps} steps",
                    labels.len()
                );
                self.bar.set_length(*total_steps);
            }
            TrainEvent::Step {
                epoch,
                step,
                loss,
                examples_per_sec,
                ..
            } => {
                self.bar.set_position(*step);
                if step % 20 == 0 {
                    self.bar.set_message(format!(
                        "epoch {epoch} loss {loss:.4} {examples_per_sec:.0} ex/s"
                    ));
                }
            }
            TrainEvent::EpochFinished(m) => {
                let valid = match (m.valid_loss, m.valid_accuracy) {
                    (Some(l), Some(a)) => format!(" valid_loss {l:.4} valid_acc {a:.4}"),
                    _ => String::new(),
                };
                let line = format!(
                    "epoch {} train_loss {:.4}{valid} ({:.1} s, {:.0} ex/s)",
                    m.epoch, m.train_loss, m.seconds, m.examples_per_sec
                );
                if self.bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    self.bar.println(line);
                }
            }
        }
    }
}

fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("--out has no directory name")?,
    };
    if args.out.exists() {
        bail!(
            "{}: already exists; choose a new --out directory",
            args.out.display()
        );
    }
    let mut train_examples = train::read_all(&args.train)?;
    let mut validation_name = None;
    let valid_examples = match (&args.valid, args.valid_split) {
        (Some(v), _) => {
            validation_name = Some(v.display().to_string());
            Some(train::read_examples(v)?)
        }
        (None, f) if f > 0.0 => {
            if f >= 1.0 {
                bail!("--valid-split must be below 1");
            }
            let (t, v) = train::stratified_split(&train_examples, f, args.seed);
            train_examples = t;
            validation_name = Some(format!(
                "{:.0}% stratified split of the training data (seed {})",
                f * 100.0,
                args.seed
            ));
            Some(v)
        }
        _ => None,
    };
    let config = TrainConfig {
        epochs: args.epochs,
        learning_rate: args.learning_rate,
        batch_size: args.batch_size,
        embed_dim: args.embed_dim,
        hidden_dim: args.hidden_dim,
        min_count: args.min_count,
        max_vocab: args.max_vocab,
        tokenizer: TokenizerConfig {
            max_tokens: args.max_tokens,
            bigrams: !args.no_bigrams,
        },
        seed: args.seed,
        patience: args.patience,
        feature_dropout: args.feature_dropout,
        lr_decay: !args.constant_lr,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("static template. This is a bug.")
            .progress_chars("=> "),
    );
    let mut observer = ProgressObserver { bar };
    let output = train::train(
        &config,
        &train_examples,
        valid_examples.as_deref(),
        None,
        &mut observer,
    )?;
    observer.bar.finish_and_clear();

    let mut manifest = output.manifest(&name, args.version);
    manifest.training.train_data = args.train.iter().map(|p| p.display().to_string()).collect();
    manifest.training.validation_data = validation_name;
    manifest.training.command = Some(std::env::args().collect::<Vec<_>>().join(" "));
    if let Some(v) = output.validation {
        manifest.metrics.insert("validation".to_string(), v);
    }
    // Write first, then evaluate the test split through the loading path the server uses, and
    // record the score in the manifest (rewritten atomically with the same files).
    let tmp_out = args.out.with_file_name(format!(
        ".{}.pending",
        args.out.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&tmp_out);
    let mut manifest = artifact::save(
        &tmp_out,
        ModelParts {
            manifest,
            vocab: &output.vocab,
            network: output.network,
        },
    )?;
    if let Some(test) = &args.test {
        let model = LoadedModel::load(&tmp_out, &backend::device())?;
        let examples = train::read_examples(test)?;
        let eval = evaluate_model(&model, &examples, &test.display().to_string(), 256)?;
        eprintln!("{}", metrics::report(&eval));
        manifest.metrics.insert("test".into(), eval);
        let json = serde_json::to_vec_pretty(&manifest)?;
        std::fs::write(tmp_out.join(artifact::MANIFEST_FILE), json)?;
    }
    std::fs::rename(&tmp_out, &args.out)
        .with_context(|| format!("moving the model into {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} labels, vocabulary {} rows, {:.1} s)",
        args.out.display(),
        manifest.labels.len(),
        manifest.network.vocab_size,
        manifest.training.seconds
    );
    Ok(())
}

fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    let model = LoadedModel::load(&args.model, &backend::device())?;
    let examples = train::read_examples(&args.data)?;
    let eval = evaluate_model(
        &model,
        &examples,
        &args.data.display().to_string(),
        args.batch_size,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&eval)?);
    } else {
        println!("model: {} v{}", model.name(), model.version());
        print!("{}", metrics::report(&eval));
    }
    Ok(())
}

fn run_predict(args: PredictArgs) -> anyhow::Result<()> {
    let model = LoadedModel::load(&args.model, &backend::device())?;
    let texts: Vec<String> = if args.texts.is_empty() {
        std::io::stdin().lock().lines().collect::<Result<_, _>>()?
    } else {
        args.texts
    };
    let device = backend::device();
    for (text, p) in texts.iter().zip(model.classify(&texts, &device)) {
        let top: Vec<String> = p
            .ranked()
            .into_iter()
            .take(args.top_k.max(1))
            .map(|i| format!("{} {:.4}", model.labels()[i], p.scores[i]))
            .collect();
        println!("{}\t{}", top.join("\t"), text);
    }
    Ok(())
}
