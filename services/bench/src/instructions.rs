//! `retrace-bench instructions`: the instructions the archive executes per archived message
//! and per trace lookup, counted by callgrind, and compared with `bench/baseline.toml`, so
//! that a commit that makes either dearer is seen on that commit, not at release time.
//!
//! Wall-clock rates on a shared 2-core machine move by tens of percent with the neighbours'
//! load; an instruction count does not. The mode re-runs its own binary under `valgrind
//! --tool=callgrind` (the hidden `--workload`), which makes `trace`'s message mix
//! ([`crate::trace::generate`]) into a fresh store with the archive's options, then traces
//! a sample of its transactions. Callgrind counts only inside the functions named here
//! (`--toggle-collect`), and only on the thread that calls them:
//!
//! - **Ingest**: what the archiver runs per message and per batch:
//!   [`retrace_archive::classify`] and [`retrace_archive::prepare`] for every record,
//!   [`LogStore::append`] for every batch of the archiver's size, the incident rule and the
//!   journal write in it (callgrind counts user-space instructions: the kernel's side of
//!   the write and the fsync is not counted). Not counted: making the messages (the
//!   publisher's work), start-up, and the store engine's background threads (memtable
//!   flushes, compactions), whose work depends on when the scheduler runs them.
//! - **Lookups**: [`lookups`], what `GET /v1/transactions/{id}` computes for each: the
//!   transaction's records and replays read from the store, the trace built by
//!   [`retrace_archive::trace`], and encoded as JSON. Not counted: HTTP, the caller check and
//!   the audit record.
//!
//! Each is its own callgrind run of the same workload: one run with both sets of toggles,
//! split by `--dump-before`, counted nothing in the lookups (callgrind 3.19). A figure more
//! than 10% above the baseline's fails the run; more than 10% below, it prints a hint to
//! lower the baseline. The baseline's own values are what is compared, so a commit accepts a
//! rise by raising the value, with a line in its `why` saying why (docs/benchmarks.md).
//!
//! Counts depend on the build: the baseline names the cargo profile its figures are of
//! (`profile`, `dev` for the debug build CI's tests make), and a build of another profile
//! prints its figures without comparing them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use retrace_archive::ArchiveConfig;
use retrace_log_store::LogStore;
use serde::Deserialize;

use crate::records::Writer;
use crate::smoke;

/// Above the baseline by more than this share, a figure fails the run; below by more, it
/// asks for a lower baseline.
const TOLERANCE: f64 = 0.10;
const PER_MESSAGE: &str = "instructions_per_message";
const PER_LOOKUP: &str = "instructions_per_lookup";
/// The cargo profile of this build, as the baseline names it: `dev` (debug assertions on,
/// `target/debug`) or `release`. A custom profile counts as the one it inherits from.
const PROFILE: &str = if cfg!(debug_assertions) {
    "dev"
} else {
    "release"
};

#[derive(clap::Args)]
pub struct Options {
    /// Messages archived (events and their outcomes), in `trace`'s mix.
    #[arg(long, default_value_t = 20_000, default_value_ifs = smoke("2000"))]
    messages: usize,
    /// Transactions traced, spread evenly over those written whole.
    #[arg(long, default_value_t = 500, default_value_ifs = smoke("20"))]
    lookups: usize,
    /// The figures compared with.
    #[arg(long, default_value = "bench/baseline.toml")]
    baseline: PathBuf,
    /// Callgrind runs; with more than one, the median counts and each run's figures and
    /// their spread are printed.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Keep callgrind's files here (`ingest-N.callgrind.out`, `lookups-N.callgrind.out`), for
    /// `callgrind_annotate`.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// A check that every phase runs, in seconds: 2,000 messages and 20 lookups unless set,
    /// counted in whatever build runs it, the baseline read but not compared. Its figures
    /// mean nothing.
    #[arg(long)]
    smoke: bool,
    /// The counted work itself, as callgrind runs it.
    #[arg(long, hide = true)]
    workload: bool,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    if options.workload {
        return workload(&options);
    }
    let baseline = read_baseline(&options.baseline)?;
    let scratch = tempfile::tempdir().context("creating a directory for callgrind's files")?;
    let files = options.keep.as_deref().unwrap_or(scratch.path());
    std::fs::create_dir_all(files).with_context(|| format!("creating {}", files.display()))?;
    // The lookups first, so that the headline, the ingest's, is printed last.
    let mut measured = Vec::new();
    for phase in [&LOOKUPS, &INGEST] {
        let mut figures = Vec::new();
        for run in 1..=options.runs {
            let file = files.join(format!("{}-{run}.callgrind.out", phase.name));
            let counted = count(&options, phase, &file)?;
            if run == 1 {
                println!("{}={}", phase.per, counted.units);
            }
            figures.push(counted.instructions as f64 / counted.units as f64);
        }
        measured.push((phase, figures));
    }
    println!("counted=calling_thread_only");
    println!("profile={PROFILE}");
    // A smoke's counts are of a small run; another profile's are of other code.
    let compared = !options.smoke && baseline.profile == PROFILE;
    if !options.smoke && !compared {
        eprintln!(
            "note: {} holds a {} build's figures and this is a {PROFILE} build: these are \
             printed, not compared",
            options.baseline.display(),
            baseline.profile
        );
    }
    if options.runs > 1 {
        println!("runs={}", options.runs);
        for (phase, figures) in &measured {
            let listed: Vec<String> = figures.iter().map(|f| format!("{f:.0}")).collect();
            println!("{}_runs={}", phase.figure, listed.join(","));
            println!("{}_spread_pct={:.2}", phase.figure, spread_pct(figures));
        }
    }
    let mut rose = Vec::new();
    for (phase, figures) in &measured {
        if !compared {
            continue;
        }
        let key = phase.figure;
        let expected = &baseline.figures[key];
        let measured = median(figures.clone());
        let change_pct = (measured / expected.value - 1.0) * 100.0;
        println!("{key}_baseline={:.0}", expected.value);
        println!("{key}_change_pct={change_pct:+.2}");
        match judge(measured, expected.value) {
            Verdict::Within => {}
            Verdict::Rose => rose.push(format!(
                "{key}={measured:.0} is {change_pct:.1}% above the baseline's {:.0} \
                 (callgrind_annotate --inclusive=yes {}-N.callgrind.out shows where)",
                expected.value, phase.name,
            )),
            Verdict::Fell => eprintln!(
                "hint: {key}={measured:.0} is {:.1}% below the baseline's {:.0}: lower its \
                 value in {} (with a line in its `why` saying what made it cheaper), so that \
                 the next rise is measured from here",
                -change_pct,
                expected.value,
                options.baseline.display()
            ),
        }
    }
    for (phase, figures) in &measured {
        println!("{}={:.0}", phase.figure, median(figures.clone()));
    }
    anyhow::ensure!(
        rose.is_empty(),
        "{}.\nIf the rise is meant, raise the value in {} and add a line to its `why` saying \
         why, in the same commit. To see where the instructions went, rerun with --keep DIR \
         here and on the parent commit, and compare the two with callgrind_annotate.",
        rose.join(";\n"),
        options.baseline.display()
    );
    Ok(())
}

/// What one callgrind run of the workload counts, and what its figure is per.
struct Phase {
    /// Its callgrind files' prefix.
    name: &'static str,
    /// Its figure's key, here and in the baseline.
    figure: &'static str,
    /// The functions counted, from their entry to their return: callgrind's names.
    functions: &'static [&'static str],
    /// The count the workload prints that the instructions are divided by.
    per: &'static str,
}

const INGEST: Phase = Phase {
    name: "ingest",
    figure: PER_MESSAGE,
    functions: &[
        "retrace_archive::classify::classify",
        "retrace_archive::classify::prepare",
        "retrace_log_store::store::LogStore::append",
    ],
    per: "messages",
};

const LOOKUPS: Phase = Phase {
    name: "lookups",
    figure: PER_LOOKUP,
    functions: &["retrace_bench::instructions::lookups"],
    per: "lookups",
};

/// Instructions counted, and the messages or lookups they were spent on.
struct Counted {
    instructions: u64,
    units: u64,
}

/// Runs this binary's `--workload` under callgrind counting `phase`'s functions, into `out`.
fn count(options: &Options, phase: &Phase, out: &Path) -> anyhow::Result<Counted> {
    let mut command = Command::new("valgrind");
    command.args(["--tool=callgrind", "--collect-atstart=no"]);
    command.arg(format!("--callgrind-out-file={}", out.display()));
    for function in phase.functions {
        command.arg(format!("--toggle-collect={function}"));
    }
    command.arg(std::env::current_exe().context("finding this binary")?);
    command.args(["instructions", "--workload"]);
    command.args(["--messages", &options.messages.to_string()]);
    command.args(["--lookups", &options.lookups.to_string()]);
    let output = command
        .output()
        .context("running valgrind (Debian's valgrind package; tests/setup installs it)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "the workload under callgrind failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let units = stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix(phase.per)?
                .strip_prefix('=')?
                .parse()
                .ok()
        })
        .with_context(|| format!("the workload printed no {}=…:\n{stdout}", phase.per))?;
    anyhow::ensure!(units > 0, "the workload had no {} to count", phase.per);
    let dump = Dump::read(out)?;
    dump.counted(phase.functions)?;
    Ok(Counted {
        instructions: dump.instructions,
        units,
    })
}

/// One of callgrind's output files: its total, and the functions it has costs for.
struct Dump {
    path: PathBuf,
    instructions: u64,
    functions: Vec<String>,
}

impl Dump {
    fn read(path: &Path) -> anyhow::Result<Dump> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading callgrind's {}", path.display()))?;
        Dump::parse(path, &text)
    }

    /// `totals: <Ir>` (the only event counted) and the functions named by `fn=` (a function
    /// with costs) and `cfn=` (one called) lines, which callgrind writes as `fn=(id) name` the
    /// first time and `fn=(id)` after.
    fn parse(path: &Path, text: &str) -> anyhow::Result<Dump> {
        let instructions = text
            .lines()
            .find_map(|line| line.strip_prefix("totals:"))
            .and_then(|totals| totals.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("{} has no `totals:` line", path.display()))?;
        let functions = text
            .lines()
            .filter_map(|line| line.strip_prefix("fn=").or(line.strip_prefix("cfn=")))
            .filter_map(|named| Some(named.split_once(") ")?.1.to_owned()))
            .collect();
        Ok(Dump {
            path: path.to_owned(),
            instructions,
            functions,
        })
    }

    /// Fails unless every one of `functions` was counted: one renamed, or inlined into its
    /// caller, no longer toggles counting and its instructions would silently go missing.
    fn counted(&self, functions: &[&str]) -> anyhow::Result<()> {
        let missing: Vec<&str> = functions
            .iter()
            .copied()
            .filter(|wanted| {
                // Callgrind marks a recursive call's cost `name'2`.
                !self.functions.iter().any(|name| {
                    name.strip_prefix(wanted)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('\''))
                })
            })
            .collect();
        anyhow::ensure!(
            missing.is_empty() && self.instructions > 0,
            "callgrind counted {} instructions in {}, and nothing in {}: renamed, or inlined? \
             Update the names in services/bench/src/instructions.rs.",
            self.instructions,
            self.path.display(),
            missing.join(", ")
        );
        Ok(())
    }
}

/// The counted work, run by callgrind: the messages archived into a fresh store with the
/// archive's options, in the archiver's batches; then the sampled transactions traced, each
/// checked to hold all its messages.
fn workload(options: &Options) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary archive directory")?;
    let store = LogStore::open(dir.path(), &ArchiveConfig::new("unused", "unused").store)?;
    let mut writer = Writer::new(store);
    // `trace`'s 200 transactions interleaved, fewer in a small run so that some finish.
    let in_flight = (options.messages / 100).clamp(1, 200);
    let transactions =
        crate::trace::generate(options.messages, in_flight, |record| writer.push(record))?;
    let messages = writer.written();
    let store = writer.finish()?;
    let step = (transactions.len() / options.lookups.max(1)).max(1);
    let sample: Vec<&(String, usize)> = transactions
        .iter()
        .step_by(step)
        .take(options.lookups)
        .collect();
    let ids: Vec<&str> = sample.iter().map(|(id, _)| id.as_str()).collect();
    let traced = lookups(&store, &ids)?;
    for ((id, expected), found) in sample.iter().zip(traced) {
        anyhow::ensure!(
            found == *expected,
            "the trace of {id} holds {found} messages, expected {expected}"
        );
    }
    println!("messages={messages}");
    println!("lookups={}", ids.len());
    Ok(())
}

/// Each transaction of `ids` traced as `GET /v1/transactions/{id}` answers it, without HTTP:
/// its records and replays read, the trace built, encoded as JSON. Answers the messages each
/// trace holds. Kept out of line: callgrind counts from its entry to its return.
#[inline(never)]
fn lookups(store: &LogStore, ids: &[&str]) -> anyhow::Result<Vec<usize>> {
    let mut traced = Vec::with_capacity(ids.len());
    for id in ids {
        let records = store.transaction(id)?;
        let replays = store.transaction_replays(id)?;
        let trace = retrace_archive::trace(id, &records, &replays, false)
            .with_context(|| format!("no trace of {id}"))?;
        std::hint::black_box(serde_json::to_vec(&trace)?);
        let outcomes: usize = trace.events.iter().map(|e| e.outcomes().count()).sum();
        traced.push(trace.events.len() + outcomes);
    }
    Ok(traced)
}

/// A figure of `bench/baseline.toml`: its value, and the lines saying why it is what it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Figure {
    value: f64,
    why: Vec<String>,
}

/// `bench/baseline.toml`: the profile of the build its figures were counted in, and the
/// figures.
#[derive(Deserialize)]
struct Baseline {
    profile: String,
    #[serde(flatten)]
    figures: BTreeMap<String, Figure>,
}

/// The baseline: its profile `dev` or `release`, and both figures, each with a positive
/// value and a reason, and no other.
fn read_baseline(path: &Path) -> anyhow::Result<Baseline> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the baseline {} (run from the repository's root, or pass --baseline)",
            path.display()
        )
    })?;
    parse_baseline(&text).with_context(|| format!("in {}", path.display()))
}

fn parse_baseline(text: &str) -> anyhow::Result<Baseline> {
    let baseline: Baseline = toml::from_str(text)?;
    anyhow::ensure!(
        ["dev", "release"].contains(&baseline.profile.as_str()),
        "profile = \"{}\": the figures must be of a `dev` or a `release` build",
        baseline.profile
    );
    let figures = &baseline.figures;
    for key in figures.keys() {
        anyhow::ensure!(
            [PER_MESSAGE, PER_LOOKUP].contains(&key.as_str()),
            "[{key}] is not a figure this bench measures ({PER_MESSAGE}, {PER_LOOKUP})"
        );
    }
    for key in [PER_MESSAGE, PER_LOOKUP] {
        anyhow::ensure!(figures.contains_key(key), "no [{key}]");
    }
    for (key, figure) in figures {
        anyhow::ensure!(figure.value > 0.0, "[{key}] value must be above 0");
        anyhow::ensure!(
            figure.why.iter().any(|line| !line.trim().is_empty()),
            "[{key}] needs a `why`: a line saying why the value is what it is"
        );
    }
    Ok(baseline)
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Within,
    /// More than [`TOLERANCE`] above: fails.
    Rose,
    /// More than [`TOLERANCE`] below: the baseline should come down.
    Fell,
}

fn judge(measured: f64, baseline: f64) -> Verdict {
    if measured > baseline * (1.0 + TOLERANCE) {
        Verdict::Rose
    } else if measured < baseline * (1.0 - TOLERANCE) {
        Verdict::Fell
    } else {
        Verdict::Within
    }
}

fn median(mut figures: Vec<f64>) -> f64 {
    figures.sort_by(f64::total_cmp);
    figures[figures.len() / 2]
}

/// (highest − lowest) / median, in percent.
fn spread_pct(figures: &[f64]) -> f64 {
    let highest = figures.iter().copied().fold(f64::MIN, f64::max);
    let lowest = figures.iter().copied().fold(f64::MAX, f64::min);
    (highest - lowest) / median(figures.to_vec()) * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rise_beyond_the_tolerance_fails_and_a_fall_beyond_it_asks_for_a_lower_baseline() {
        assert_eq!(judge(110.0, 100.0), Verdict::Within);
        assert_eq!(judge(110.5, 100.0), Verdict::Rose);
        assert_eq!(judge(90.0, 100.0), Verdict::Within);
        assert_eq!(judge(89.5, 100.0), Verdict::Fell);
    }

    #[test]
    fn the_checked_in_baseline_has_both_figures_each_with_a_reason_of_the_build_ci_runs() {
        let baseline = parse_baseline(include_str!("../../../bench/baseline.toml")).unwrap();
        assert_eq!(
            baseline.profile, "dev",
            ".ci/run compares target/debug's counts"
        );
    }

    #[test]
    fn a_figure_missing_without_a_reason_or_of_an_unknown_name_or_profile_is_refused() {
        let lookup = "[instructions_per_lookup]\nvalue = 10\nwhy = [\"measured\"]\n";
        let dev = format!("profile = \"dev\"\n{lookup}");
        assert!(parse_baseline(&dev).is_err());
        let no_reason = "[instructions_per_message]\nvalue = 10\nwhy = [\"\"]\n";
        assert!(parse_baseline(&format!("{dev}{no_reason}")).is_err());
        let unknown = "[instructions_per_msg]\nvalue = 10\nwhy = [\"measured\"]\n";
        assert!(parse_baseline(&format!("{dev}{unknown}")).is_err());
        let message = "[instructions_per_message]\nvalue = 10\nwhy = [\"measured\"]\n";
        assert!(parse_baseline(&format!("{dev}{message}")).is_ok());
        assert!(
            parse_baseline(&format!("{lookup}{message}")).is_err(),
            "no profile"
        );
        let bench = format!("profile = \"bench\"\n{lookup}{message}");
        assert!(parse_baseline(&bench).is_err());
    }

    #[test]
    fn callgrind_totals_and_named_functions_are_read() {
        let text = "events: Ir\nfn=(3) retrace_bench::records::archived\n\
                    cfn=(1) retrace_log_store::store::LogStore::append\ncalls=1 0\n0 6\n\
                    fn=(1)\n0 5\nfn=(2) retrace_archive::classify::classify'2\n0 3\n\
                    fn=(1)\n0 1\ntotals: 9\n";
        let dump = Dump::parse(Path::new("callgrind.out"), text).unwrap();
        assert_eq!(dump.instructions, 9);
        dump.counted(&INGEST.functions[2..]).unwrap();
        dump.counted(&["retrace_archive::classify::classify"])
            .unwrap();
        assert!(dump.counted(INGEST.functions).is_err());
    }
}
