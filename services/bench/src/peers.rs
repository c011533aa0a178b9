//! `retrace-bench peers`: Retrace beside what a team without it runs instead, on the same
//! machine in one run (issue 21, section 4). That team sinks its topics into PostgreSQL (Kafka
//! Connect's JDBC sink) and finds a transaction by an indexed column; the question is what
//! Retrace's archive buys over that, in ingest rate and in trace latency.
//!
//! - **Messages**: `trace`'s mix ([`crate::trace::generate`]: transactions of 10 to 25 events,
//!   each with its outcome), made as the archive makes its records, before any clock starts.
//! - **Retrace's ingest**: those records appended through [`Writer`] (`trace`'s fill path:
//!   [`LogStore::append`] in the archiver's batches, fsynced, then a flush) into a store with
//!   the archive's options.
//! - **PostgreSQL's ingest**: PostgreSQL started by the bench (`initdb`, `pg_ctl`, as the
//!   `postgres` user when run as root) on loopback in a temporary directory, with Debian's
//!   defaults; one table with the envelope's columns and a btree on the transaction id; the
//!   same messages (read back from Retrace's store, sorted by time, their COPY data encoded
//!   before the clock) loaded by one binary `COPY … FROM STDIN` per batch of the archiver's
//!   size, each its own committed (fsynced) transaction, as a sink commits each batch.
//! - **Trace**: the same random transactions looked up on both: `GET /v1/transactions/{id}`
//!   over HTTP from the served archive (token checked, read audited, trace built), and
//!   `SELECT … WHERE transaction_id = $1 ORDER BY occurred_at` as a prepared statement (rows
//!   only); each after an untimed warm pass, each answer's message count checked.
//!
//! Prints both sides' figures, the two goals with `met=`, `ingest_ratio` (Retrace /
//! PostgreSQL, messages per second) and last `trace_p99_ratio` (Retrace / PostgreSQL).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use bytes::{BufMut as _, Bytes, BytesMut};
use futures::SinkExt as _;
use rand::seq::SliceRandom as _;
use retrace_archive::ArchiveConfig;
use retrace_log_store::{ArchivedRecord, LogStore};
use tokio_postgres::types::{IsNull, ToSql, Type};

use crate::records::{Writer, archiver_batch};
use crate::served::{ServedArchive, ms, percentiles};
use crate::smoke;

/// The Debian package that brings PostgreSQL 15's server programs and the `postgres` user.
const POSTGRES_PACKAGE: &str = "postgresql-15";
/// Where Debian's packages put each major version's server programs.
const POSTGRES_LIB: &str = "/usr/lib/postgresql";
const INGEST_GOAL_MIN_RATIO: f64 = 2.0;
const TRACE_GOAL_MAX_P99_RATIO: f64 = 0.5;

/// The sink's table: the envelope's ids as columns, the Kafka coordinates, and the message's
/// value whole (the encoded envelope or outcome), as Retrace keeps it. A JDBC sink's
/// `pk.mode=kafka` would add a primary key on the coordinates, a second btree that is left out.
const CREATE_TABLE: &str = "CREATE TABLE messages (
    event_id text,
    transaction_id text NOT NULL,
    causation_id text,
    subject_ids text[] NOT NULL,
    source text NOT NULL,
    event_type text NOT NULL,
    occurred_at timestamptz NOT NULL,
    kafka_topic text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    payload bytea
)";
const CREATE_INDEX: &str = "CREATE INDEX messages_transaction_id ON messages (transaction_id)";
const COPY: &str = "COPY messages FROM STDIN (FORMAT binary)";
const TRACE: &str = "SELECT event_id, transaction_id, causation_id, subject_ids, source, \
    event_type, occurred_at, kafka_topic, kafka_partition, kafka_offset, payload \
    FROM messages WHERE transaction_id = $1 ORDER BY occurred_at";

#[derive(clap::Args)]
pub struct Options {
    /// Messages archived by each side (events and their outcomes).
    #[arg(long, default_value_t = 1_000_000, default_value_ifs = smoke("20000"))]
    messages: usize,
    /// Transactions traced on each side: the same random ones.
    #[arg(long, default_value_t = 2_000, default_value_ifs = smoke("100"))]
    lookups: usize,
    /// Transactions are made this many at a time, interleaved, as they arrive in Kafka.
    #[arg(long, default_value_t = 200)]
    in_flight: usize,
    /// The directory of PostgreSQL's `initdb` and `pg_ctl`; by default the newest
    /// /usr/lib/postgresql/<version>/bin.
    #[arg(long)]
    postgres_bin: Option<PathBuf>,
    /// A check that every phase runs, in seconds: 20,000 messages and 100 lookups unless
    /// set. Its figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let Some(bin) = options.postgres_bin.clone().or_else(installed_postgres) else {
        println!(
            "skipped=PostgreSQL is not installed (no {POSTGRES_LIB}/<version>/bin/initdb): \
             apt-get install {POSTGRES_PACKAGE}"
        );
        return Ok(());
    };
    let mut records = Vec::with_capacity(options.messages + 50);
    let transactions = crate::trace::generate(options.messages, options.in_flight, |record| {
        records.push(record);
        Ok(())
    })?;
    let messages = records.len();
    println!("messages={messages}");
    println!("transactions={}", transactions.len());
    println!("batch_records={}", archiver_batch());

    let dir = tempfile::tempdir().context("creating a temporary archive directory")?;
    println!("retrace_ingest=log_store_append_archiver_batches");
    let mut writer = Writer::new(LogStore::open(
        dir.path(),
        &ArchiveConfig::new("unused", "unused").store,
    )?);
    let started = Instant::now();
    for record in records {
        writer.push(record)?;
    }
    let store = writer.finish()?;
    let retrace_rate = messages as f64 / started.elapsed().as_secs_f64();
    let retrace_disk = store.disk_space()?;
    let batches = copy_batches(&store, messages)?;
    // The archive opens the store to serve it: every other handle must be gone first.
    drop(store);

    let mut sample = transactions;
    sample.shuffle(&mut rand::rng());
    sample.truncate(options.lookups);

    let postgres = Postgres::start(&bin)?;
    let client = postgres.connect().await?;
    println!(
        "postgres_version={}",
        postgres_setting(&client, "server_version").await?
    );
    for setting in ["shared_buffers", "fsync", "synchronous_commit"] {
        println!(
            "postgres_{setting}={}",
            postgres_setting(&client, setting).await?
        );
    }
    client.batch_execute(CREATE_TABLE).await?;
    client.batch_execute(CREATE_INDEX).await?;
    let started = Instant::now();
    for batch in batches {
        let sink = client.copy_in::<_, Bytes>(COPY).await?;
        futures::pin_mut!(sink);
        sink.send(batch).await?;
        sink.finish().await?;
    }
    let postgres_rate = messages as f64 / started.elapsed().as_secs_f64();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM messages", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        rows == messages as i64,
        "PostgreSQL holds {rows} rows, {messages} were copied"
    );
    // What autovacuum would do soon after such a load, done now so that it does not run
    // during the lookups.
    client.batch_execute("VACUUM (ANALYZE) messages").await?;
    let postgres_disk: i64 = client
        .query_one("SELECT pg_total_relation_size('messages')", &[])
        .await?
        .get(0);
    let mut postgres_traces = time_postgres_traces(&client, &sample).await?;
    drop(client);
    // Stopped before Retrace is measured, so that neither side's lookups share the cores
    // with the other's background work.
    let postgres_dir_bytes = postgres.stop()?;

    let archive = ServedArchive::start(dir.path()).await?;
    let mut retrace_traces = crate::trace::time_traces(
        &reqwest::Client::new(),
        &archive.url,
        Some(&archive.token),
        &sample,
    )
    .await?;
    archive.stop().await?;

    let (retrace_p50, retrace_p99) = percentiles(&mut retrace_traces);
    let (postgres_p50, postgres_p99) = percentiles(&mut postgres_traces);
    let ingest_ratio = retrace_rate / postgres_rate;
    let trace_p99_ratio = ms(retrace_p99) / ms(postgres_p99);
    println!("retrace_ingest_msgs_per_s={retrace_rate:.0}");
    println!("postgres_ingest_msgs_per_s={postgres_rate:.0}");
    println!("lookups={}", sample.len());
    println!("retrace_trace_p50_ms={:.3}", ms(retrace_p50));
    println!("retrace_trace_p99_ms={:.3}", ms(retrace_p99));
    println!("postgres_trace_p50_ms={:.3}", ms(postgres_p50));
    println!("postgres_trace_p99_ms={:.3}", ms(postgres_p99));
    println!("retrace_disk_bytes={retrace_disk}");
    println!("postgres_disk_bytes={postgres_disk}");
    println!("postgres_data_dir_bytes={postgres_dir_bytes}");
    println!(
        "ingest_goal_min_ratio={INGEST_GOAL_MIN_RATIO} ingest_ratio={ingest_ratio:.3} met={}",
        ingest_ratio >= INGEST_GOAL_MIN_RATIO
    );
    println!(
        "trace_goal_max_p99_ratio={TRACE_GOAL_MAX_P99_RATIO} trace_p99_ratio={trace_p99_ratio:.3} \
         met={}",
        trace_p99_ratio <= TRACE_GOAL_MAX_P99_RATIO
    );
    println!("ingest_ratio={ingest_ratio:.3}");
    println!("trace_p99_ratio={trace_p99_ratio:.3}");
    Ok(())
}

/// The `bin` directory of the newest PostgreSQL Debian installed, if any.
fn installed_postgres() -> Option<PathBuf> {
    std::fs::read_dir(POSTGRES_LIB)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

/// Every message in the store, in the order they arrived, as binary COPY data, a batch of
/// the archiver's size each.
fn copy_batches(store: &LogStore, messages: usize) -> anyhow::Result<Vec<Bytes>> {
    let mut records = Vec::with_capacity(messages);
    for position in store.positions()? {
        let mut cursor = None;
        loop {
            let page = store.records(
                &position.topic,
                Some(position.partition),
                0,
                archiver_batch(),
                cursor.as_deref(),
            )?;
            records.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    anyhow::ensure!(
        records.len() == messages,
        "read {} records back from the store, {messages} were appended",
        records.len()
    );
    records.sort_by_key(|record| record.time_ms);
    records.chunks(archiver_batch()).map(copy_data).collect()
}

/// `records` in PostgreSQL's binary COPY format (a header, one tuple each, the trailer),
/// each field encoded by the client library's own [`ToSql`].
fn copy_data(records: &[ArchivedRecord]) -> anyhow::Result<Bytes> {
    let mut data = BytesMut::new();
    data.put_slice(b"PGCOPY\n\xff\r\n\0");
    data.put_i32(0); // flags
    data.put_i32(0); // header extension length
    for record in records {
        let ids = record
            .ids
            .as_ref()
            .with_context(|| format!("record {:?} has no ids", record.key))?;
        // An outcome's causation is the event it reports on, as its headers say.
        let causation = match (&ids.causation_id, &record.outcome) {
            (id, Some(outcome)) if id.is_empty() => &outcome.event_id,
            (id, _) => id,
        };
        let occurred_at =
            SystemTime::UNIX_EPOCH + Duration::from_millis(record.time_ms.max(0) as u64);
        let fields: [(&(dyn ToSql + Sync), Type); 11] = [
            (&present(&ids.event_id), Type::TEXT),
            (&ids.transaction_id, Type::TEXT),
            (&present(causation), Type::TEXT),
            (&ids.subject_ids, Type::TEXT_ARRAY),
            (&ids.source, Type::TEXT),
            (&ids.event_type, Type::TEXT),
            (&occurred_at, Type::TIMESTAMPTZ),
            (&record.key.topic, Type::TEXT),
            (&record.key.partition, Type::INT4),
            (&record.key.offset, Type::INT8),
            (&record.value, Type::BYTEA),
        ];
        data.put_i16(fields.len() as i16);
        for (value, kind) in fields {
            let at = data.len();
            data.put_i32(0);
            let length = match value
                .to_sql_checked(&kind, &mut data)
                .map_err(|error| anyhow::anyhow!("encoding a {kind} for COPY: {error}"))?
            {
                IsNull::Yes => -1,
                IsNull::No => i32::try_from(data.len() - at - 4)?,
            };
            data[at..at + 4].copy_from_slice(&length.to_be_bytes());
        }
    }
    data.put_i16(-1);
    Ok(data.freeze())
}

/// An id, or none (NULL) when empty.
fn present(id: &str) -> Option<&str> {
    (!id.is_empty()).then_some(id)
}

async fn postgres_setting(client: &tokio_postgres::Client, name: &str) -> anyhow::Result<String> {
    let row = client
        .query_one("SELECT current_setting($1)", &[&name])
        .await?;
    Ok(row.get(0))
}

/// Looks each sampled transaction up once untimed (a warm cache), then once timed, through
/// one prepared statement; checks each answer holds all the transaction's messages.
async fn time_postgres_traces(
    client: &tokio_postgres::Client,
    sample: &[(String, usize)],
) -> anyhow::Result<Vec<Duration>> {
    let trace = client.prepare(TRACE).await?;
    for (transaction, _) in sample {
        client.query(&trace, &[transaction]).await?;
    }
    let mut timings = Vec::with_capacity(sample.len());
    for (transaction, messages) in sample {
        let began = Instant::now();
        let rows = client.query(&trace, &[transaction]).await?;
        timings.push(began.elapsed());
        anyhow::ensure!(
            rows.len() == *messages,
            "PostgreSQL answered {} rows for {transaction}, expected {messages}",
            rows.len()
        );
    }
    Ok(timings)
}

/// A PostgreSQL server of the bench's own, in a temporary directory, listening on a free
/// loopback port; stopped when dropped, on error too.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    // Dropped after `drop` has stopped the server, so the directory is gone last.
    dir: tempfile::TempDir,
}

impl Postgres {
    fn start(bin: &Path) -> anyhow::Result<Postgres> {
        let dir = tempfile::tempdir().context("creating PostgreSQL's temporary directory")?;
        // World-writable and sticky like /tmp, so that the `postgres` user can create its
        // data directory, socket and log in it while root keeps owning it.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )?;
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port();
        let postgres = Postgres {
            bin: bin.to_owned(),
            data: dir.path().join("data"),
            port,
            dir,
        };
        postgres.run(
            "initdb",
            &[
                "--auth=trust".as_ref(),
                "--username=postgres".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--locale=C".as_ref(),
                // Only initdb's own files go unsynced; the server fsyncs as configured.
                "--no-sync".as_ref(),
                "-D".as_ref(),
                postgres.data.as_os_str(),
            ],
        )?;
        let settings = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n",
            postgres.dir.path().display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(postgres.data.join("postgresql.conf"))
            .and_then(|mut conf| std::io::Write::write_all(&mut conf, settings.as_bytes()))
            .context("setting PostgreSQL's address")?;
        let log = postgres.dir.path().join("postgres.log");
        postgres
            .run(
                "pg_ctl",
                &[
                    "start".as_ref(),
                    "--wait".as_ref(),
                    "--timeout=120".as_ref(),
                    "-D".as_ref(),
                    postgres.data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                ],
            )
            .with_context(|| {
                format!(
                    "PostgreSQL's log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })?;
        Ok(postgres)
    }

    async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await
        .context("connecting to PostgreSQL")?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Stops the server and answers the size of its data directory: the table, its index,
    /// the catalogs and the write-ahead log.
    fn stop(self) -> anyhow::Result<u64> {
        self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "--wait".as_ref(),
                "--mode=fast".as_ref(),
                "-D".as_ref(),
                self.data.as_os_str(),
            ],
        )?;
        directory_bytes(&self.data)
    }

    /// Runs one of PostgreSQL's programs, as the `postgres` user when the bench runs as root
    /// (PostgreSQL refuses to run as root).
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
        let output = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program}"))?;
        anyhow::ensure!(
            output.status.success(),
            "{program} {args:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match running_as_root() {
            true => {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(program);
                command
            }
            false => Command::new(program),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The server removes its pid file when it stops: gone after `stop` or a failed start.
        if self.data.join("postmaster.pid").exists() {
            let _ = self
                .command("pg_ctl")
                .args(["stop", "--wait", "--mode=immediate", "-D"])
                .arg(&self.data)
                .output();
        }
    }
}

/// Whether this process runs as root: `/proc/self` belongs to the process's user.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .is_ok_and(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == 0)
}

/// The bytes of every file under `dir`.
fn directory_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += match meta.is_dir() {
            true => directory_bytes(&entry.path())?,
            false => meta.len(),
        };
    }
    Ok(total)
}
