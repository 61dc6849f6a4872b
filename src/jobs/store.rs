//! The job store: one SQLite database (`<data_dir>/jobs.sqlite3`, WAL mode) with the jobs, their
//! event logs and which model version serves.
//!
//! SQLite rather than JSON files because a job is updated many times while it runs (progress,
//! epoch metrics, events) and each update must be atomic and survive a crash; WAL lets the HTTP
//! handlers read while a job thread writes. One connection behind a mutex is enough: every
//! statement is short, and progress writes are throttled by the runner.

use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::model::artifact::Evaluation;
use crate::train::EpochMetrics;

/// Where a job is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    /// Succeeded, failed or cancelled: nothing will change any more.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// Training settings a job asked for; unset fields take [`crate::train::TrainConfig`]'s defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Hyperparameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// What a job was asked to do, as persisted (the examples live in files beside the database).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub model: String,
    pub base_model: Option<String>,
    pub hyperparameters: Hyperparameters,
    pub validation_split: f64,
    pub promote: bool,
    pub train_examples: u64,
    /// Examples given as validation data (0 when the validation set is split off).
    pub validation_examples: u64,
    /// Training data file, relative to the data directory.
    pub train_file: String,
    /// Validation data file, relative to the data directory, when given.
    pub validation_file: Option<String>,
}

/// Live progress of a running job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub epoch: u32,
    pub epochs: u32,
    pub step: u64,
    pub total_steps: u64,
    pub examples_per_sec: f64,
    /// Loss of the latest batch.
    pub loss: f64,
}

/// `{code, message}` of a failed job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobErrorInfo {
    pub code: String,
    pub message: String,
}

/// The model version a job produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResultModel {
    pub model: String,
    pub version: u32,
}

/// A job as stored and as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    pub object: String,
    pub status: JobStatus,
    pub model: String,
    pub base_model: Option<String>,
    pub hyperparameters: Hyperparameters,
    pub validation_split: f64,
    pub promote: bool,
    pub train_examples: u64,
    pub validation_examples: u64,
    pub progress: Option<Progress>,
    /// Metrics of every finished epoch, in order.
    #[schema(value_type = Vec<Object>)]
    pub epochs: Vec<EpochMetrics>,
    /// Evaluation of the resulting model on the validation data.
    #[schema(value_type = Option<Object>)]
    pub evaluation: Option<Evaluation>,
    pub result: Option<ResultModel>,
    pub error: Option<JobErrorInfo>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    #[schema(ignore)]
    pub spec: Option<JobSpec>,
}

/// One entry of a job's event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobEvent {
    pub seq: u64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// `info`, `warn` or `error`.
    pub level: String,
    /// `created`, `started`, `training_started`, `epoch_finished`, `checkpoint_written`,
    /// `promoted`, `succeeded`, `failed`, `cancelled`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("job store: bad JSON in column {column}: {source}")]
    Json {
        column: &'static str,
        source: serde_json::Error,
    },
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    model TEXT NOT NULL,
    base_model TEXT,
    spec TEXT NOT NULL,
    progress TEXT,
    epochs TEXT NOT NULL DEFAULT '[]',
    evaluation TEXT,
    result_model TEXT,
    result_version INTEGER,
    error_code TEXT,
    error_message TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    level TEXT NOT NULL,
    type TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS serving (
    model TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
";

const JOB_COLUMNS: &str = "id, status, model, base_model, spec, progress, epochs, evaluation, \
     result_model, result_version, error_code, error_message, created_at, started_at, finished_at";

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("job values serialise. This is a bug.")
}

fn parse<T: for<'de> Deserialize<'de>>(column: &'static str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|source| StoreError::Json { column, source })
}

/// The database handle.
pub struct Store {
    conn: Mutex<Connection>,
}

/// A raw row, parsed into a [`Job`] outside the rusqlite closure so JSON errors can be reported.
struct Row {
    cols: [Option<String>; 15],
    result_version: Option<u32>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        // WAL: readers never wait for the writer; synchronous=FULL: a committed job survives a
        // power cut, which is the promise POST /train-job makes when it answers 202.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // Every write is one statement or one transaction, so a poisoned lock is consistent.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts a new queued job and its `created` event in one transaction.
    pub fn insert_job(
        &self,
        id: &str,
        spec: &JobSpec,
        created_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO jobs (id, status, model, base_model, spec, created_at) \
             VALUES (?1, 'queued', ?2, ?3, ?4, ?5)",
            params![
                id,
                spec.model,
                spec.base_model,
                json(spec),
                created_at.to_rfc3339()
            ],
        )?;
        let message = format!(
            "job created: {} training examples for model {:?}",
            spec.train_examples, spec.model
        );
        insert_event(&tx, id, "info", "created", &message, None, created_at)?;
        tx.commit()?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                read_row,
            )
            .optional()?;
        drop(conn);
        row.map(to_job).transpose()
    }

    /// Jobs newest first: at most `limit` after the job `after` (a cursor: the last id of the
    /// previous page), optionally only those with `status`. Returns the page and whether more
    /// follow.
    pub fn list(
        &self,
        status: Option<JobStatus>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<Job>, bool), StoreError> {
        let conn = self.conn();
        let after_seq: i64 = match after {
            Some(id) => conn
                .query_row("SELECT seq FROM jobs WHERE id = ?1", [id], |r| r.get(0))
                .optional()?
                .unwrap_or(i64::MAX),
            None => i64::MAX,
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE seq < ?1 AND (?2 IS NULL OR status = ?2) \
             ORDER BY seq DESC LIMIT ?3"
        ))?;
        let rows = stmt
            .query_map(
                params![after_seq, status.map(|s| s.as_str()), limit as i64 + 1],
                read_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        let has_more = rows.len() > limit;
        let jobs = rows
            .into_iter()
            .take(limit)
            .map(to_job)
            .collect::<Result<_, _>>()?;
        Ok((jobs, has_more))
    }

    /// Ids of jobs in `status`, oldest first.
    pub fn ids_with_status(&self, status: JobStatus) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM jobs WHERE status = ?1 ORDER BY seq")?;
        let ids = stmt
            .query_map([status.as_str()], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }

    /// How many jobs are in each status (every status listed, zero included).
    pub fn count_by_status(&self) -> Result<Vec<(JobStatus, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let all = [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ];
        Ok(all
            .into_iter()
            .map(|st| {
                let n = rows
                    .iter()
                    .find(|(name, _)| name == st.as_str())
                    .map_or(0, |(_, n)| *n);
                (st, n.max(0) as u64)
            })
            .collect())
    }

    pub fn events(&self, id: &str) -> Result<Vec<JobEvent>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, created_at, level, type, message, data FROM events \
             WHERE job_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(seq, at, level, kind, message, data)| {
                Ok(JobEvent {
                    seq: seq as u64,
                    created_at: parse_time(&at),
                    level,
                    kind,
                    message,
                    data: data.map(|d| parse("events.data", &d)).transpose()?,
                })
            })
            .collect()
    }

    /// Appends an event.
    pub fn event(
        &self,
        id: &str,
        level: &str,
        kind: &str,
        message: &str,
        data: Option<serde_json::Value>,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        insert_event(&conn, id, level, kind, message, data, Utc::now())
    }

    /// Moves a job to `status` with an event, in one transaction. `started`/`finished` set those
    /// timestamps; `error` and `result` fill those columns.
    pub fn transition(
        &self,
        id: &str,
        status: JobStatus,
        error: Option<&JobErrorInfo>,
        result: Option<(&ResultModel, Option<&Evaluation>)>,
        event: (&str, &str, Option<serde_json::Value>),
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let started = (status == JobStatus::Running).then(|| now.to_rfc3339());
        let finished = status.is_finished().then(|| now.to_rfc3339());
        tx.execute(
            "UPDATE jobs SET status = ?2, \
                 started_at = COALESCE(?3, started_at), \
                 finished_at = COALESCE(?4, finished_at), \
                 error_code = ?5, error_message = ?6 \
             WHERE id = ?1",
            params![
                id,
                status.as_str(),
                started,
                finished,
                error.map(|e| e.code.as_str()),
                error.map(|e| e.message.as_str()),
            ],
        )?;
        if let Some((model, evaluation)) = result {
            tx.execute(
                "UPDATE jobs SET result_model = ?2, result_version = ?3, evaluation = ?4 WHERE id = ?1",
                params![id, model.model, model.version, evaluation.map(json)],
            )?;
        }
        let level = if status == JobStatus::Failed {
            "error"
        } else {
            "info"
        };
        insert_event(&tx, id, level, event.0, event.1, event.2, now)?;
        tx.commit()?;
        Ok(())
    }

    pub fn set_progress(&self, id: &str, progress: &Progress) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE jobs SET progress = ?2 WHERE id = ?1",
            params![id, json(progress)],
        )?;
        Ok(())
    }

    /// Records a finished epoch: its metrics join the job's list and an event is logged.
    pub fn epoch_finished(
        &self,
        id: &str,
        metrics: &EpochMetrics,
        progress: &Progress,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let epochs: String =
            tx.query_row("SELECT epochs FROM jobs WHERE id = ?1", [id], |r| r.get(0))?;
        let mut epochs: Vec<EpochMetrics> = parse("jobs.epochs", &epochs)?;
        epochs.push(metrics.clone());
        tx.execute(
            "UPDATE jobs SET epochs = ?2, progress = ?3 WHERE id = ?1",
            params![id, json(&epochs), json(progress)],
        )?;
        let message = match (metrics.valid_loss, metrics.valid_accuracy) {
            (Some(l), Some(a)) => format!(
                "epoch {} finished: train loss {:.4}, validation loss {l:.4}, validation accuracy {a:.4}",
                metrics.epoch, metrics.train_loss
            ),
            _ => format!(
                "epoch {} finished: train loss {:.4}",
                metrics.epoch, metrics.train_loss
            ),
        };
        let data = serde_json::to_value(metrics).ok();
        insert_event(
            &tx,
            id,
            "info",
            "epoch_finished",
            &message,
            data,
            Utc::now(),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The persisted serving version of every model that was ever promoted.
    pub fn serving(&self) -> Result<Vec<(String, u32)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT model, version FROM serving ORDER BY model")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn set_serving(&self, model: &str, version: u32) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO serving (model, version, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT(model) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
            params![model, version, Utc::now().to_rfc3339()],
        )?;
        Ok(())
    }
}

fn insert_event(
    conn: &Connection,
    id: &str,
    level: &str,
    kind: &str,
    message: &str,
    data: Option<serde_json::Value>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO events (job_id, seq, created_at, level, type, message, data) \
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id = ?1), ?2, ?3, ?4, ?5, ?6)",
        params![
            id,
            at.to_rfc3339(),
            level,
            kind,
            message,
            data.map(|d| d.to_string())
        ],
    )?;
    Ok(())
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let mut cols: [Option<String>; 15] = Default::default();
    for (i, c) in cols.iter_mut().enumerate() {
        if i != 9 {
            *c = r.get(i)?;
        }
    }
    Ok(Row {
        cols,
        result_version: r.get(9)?,
    })
}

fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

fn to_job(row: Row) -> Result<Job, StoreError> {
    let [
        id,
        status,
        model,
        base_model,
        spec,
        progress,
        epochs,
        evaluation,
        result_model,
        _,
        error_code,
        error_message,
        created_at,
        started_at,
        finished_at,
    ] = row.cols;
    let spec: JobSpec = parse("jobs.spec", spec.as_deref().unwrap_or("null"))?;
    let status = status
        .as_deref()
        .and_then(JobStatus::parse)
        .ok_or_else(|| StoreError::Json {
            column: "jobs.status",
            source: serde::de::Error::custom(format!("unknown status {status:?}")),
        })?;
    Ok(Job {
        id: id.unwrap_or_default(),
        object: "train_job".into(),
        status,
        model: model.unwrap_or_default(),
        base_model,
        hyperparameters: spec.hyperparameters.clone(),
        validation_split: spec.validation_split,
        promote: spec.promote,
        train_examples: spec.train_examples,
        validation_examples: spec.validation_examples,
        progress: progress.map(|p| parse("jobs.progress", &p)).transpose()?,
        epochs: parse("jobs.epochs", epochs.as_deref().unwrap_or("[]"))?,
        evaluation: evaluation
            .map(|e| parse("jobs.evaluation", &e))
            .transpose()?,
        result: match (result_model, row.result_version) {
            (Some(model), Some(version)) => Some(ResultModel { model, version }),
            _ => None,
        },
        error: error_code.map(|code| JobErrorInfo {
            code,
            message: error_message.unwrap_or_default(),
        }),
        created_at: created_at.as_deref().map(parse_time).unwrap_or_default(),
        started_at: started_at.as_deref().map(parse_time),
        finished_at: finished_at.as_deref().map(parse_time),
        spec: Some(spec),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(model: &str) -> JobSpec {
        JobSpec {
            model: model.into(),
            base_model: None,
            hyperparameters: Hyperparameters {
                epochs: Some(2),
                ..Default::default()
            },
            validation_split: 0.1,
            promote: false,
            train_examples: 10,
            validation_examples: 0,
            train_file: "jobs/x/train.jsonl".into(),
            validation_file: None,
        }
    }

    #[test]
    fn jobs_events_and_serving_round_trip_and_paginate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("jobs.sqlite3")).unwrap();
        for i in 0..5 {
            store
                .insert_job(&format!("job-{i}"), &spec("m"), Utc::now())
                .unwrap();
        }
        let j = store.get("job-2").unwrap().unwrap();
        assert_eq!(j.status, JobStatus::Queued);
        assert_eq!(j.hyperparameters.epochs, Some(2));
        assert!(store.get("nope").unwrap().is_none());

        let (page, more) = store.list(None, 2, None).unwrap();
        let ids: Vec<&str> = page.iter().map(|j| j.id.as_str()).collect();
        assert_eq!((ids, more), (vec!["job-4", "job-3"], true));
        let (page, more) = store.list(None, 2, Some("job-1")).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!((page[0].id.as_str(), more), ("job-0", false));

        store
            .transition(
                "job-3",
                JobStatus::Running,
                None,
                None,
                ("started", "go", None),
            )
            .unwrap();
        let m = EpochMetrics {
            epoch: 1,
            train_loss: 0.5,
            valid_loss: Some(0.4),
            valid_accuracy: Some(0.9),
            seconds: 1.0,
            examples_per_sec: 10.0,
        };
        store
            .epoch_finished("job-3", &m, &Progress::default())
            .unwrap();
        let err = JobErrorInfo {
            code: "interrupted".into(),
            message: "x".into(),
        };
        store
            .transition(
                "job-3",
                JobStatus::Failed,
                Some(&err),
                None,
                ("failed", "x", None),
            )
            .unwrap();
        let j = store.get("job-3").unwrap().unwrap();
        assert_eq!(j.status, JobStatus::Failed);
        assert_eq!(j.epochs, vec![m]);
        assert_eq!(j.error, Some(err));
        assert!(j.started_at.is_some() && j.finished_at.is_some());
        let (failed, _) = store.list(Some(JobStatus::Failed), 10, None).unwrap();
        assert_eq!(failed.len(), 1);
        let kinds: Vec<String> = store
            .events("job-3")
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["created", "started", "epoch_finished", "failed"]);
        assert_eq!(
            store.ids_with_status(JobStatus::Queued).unwrap(),
            ["job-0", "job-1", "job-2", "job-4"]
        );

        store.set_serving("m", 2).unwrap();
        store.set_serving("m", 3).unwrap();
        drop(store);
        let store = Store::open(&dir.path().join("jobs.sqlite3")).unwrap();
        assert_eq!(store.serving().unwrap(), vec![("m".to_string(), 3)]);
        assert_eq!(
            store.get("job-3").unwrap().unwrap().status,
            JobStatus::Failed
        );
    }
}
