//! The README, run as a newcomer would run it, so that it cannot rot.
//!
//! Every command in the README's `sh` blocks is either run here for real, against the
//! `retrace dev --demo` it tells people to start, and checked against what the README says it
//! does; or, for `helm install` and `helm test`, which need a cluster, rendered with the same
//! arguments (the pods of such a render are started for real by `tests/scenarios/helm.rs`); or
//! listed in [`NOT_RUN_HERE`] with the reason, and then checked to be run by `.ci/run`. A command that is neither fails the test, and so does an entry of the list the
//! README no longer has. (Its links are checked by `tests/scenarios/links.rs`.)

mod common;

use common::{DevServer, Run, assert_exit};
use retrace_tests::{PATIENCE, wait_for};
use std::path::{Path, PathBuf};

/// README commands this test does not run: the command as written (comments and extra spaces
/// aside), and why. Each must be a line of `.ci/run`, so CI runs it instead.
const NOT_RUN_HERE: &[(&str, &str)] = &[
    (
        "tests/setup",
        "installs Debian packages as root and Kafka's jars: machine setup, not something a test \
         may do",
    ),
    (
        "cargo test --workspace --locked",
        "the test command itself, which runs this test",
    ),
];

/// The prefixes under which the README runs the `retrace` binary; the test runs the one cargo
/// built for it instead.
const RETRACE: &[&[&str]] = &[
    &["cargo", "run", "--release", "-p", "retrace", "--"],
    &["./target/release/retrace"],
    &["retrace"],
];

/// Demo registrations a second: enough for a validation failure (one in twelve) within a
/// second or two.
const DEMO_RATE: u32 = 10;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("replay-cli is in the workspace")
        .to_owned()
}

fn read(relative: &str) -> String {
    let path = workspace().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn every_readme_command_runs_and_does_what_the_readme_says() {
    let readme = read("README.md");
    let steps = readme_steps(&readme);

    let dir = tempfile::tempdir().unwrap();
    // The README's directory: the dev server keeps its data in ./retrace-data, where the CLI
    // finds its token.
    let data_dir = dir.path().join("retrace-data");
    let mut dev: Option<DevServer> = None;
    let mut failed: Option<String> = None;
    let mut replayed = false;
    let mut installed: Option<Vec<serde_json::Value>> = None;
    for (command, step) in &steps {
        eprintln!("README.md:{}: {}", command.line, command.text);
        match step {
            Step::Dev => {
                // `DevServer` runs `retrace dev --demo`, on a free port and at a known rate.
                let server = DevServer::start(&data_dir, DEMO_RATE, None);
                // "It prints the Kafka bootstrap servers, the HTTP address ... and an admin
                // API token, and writes them to retrace-data/dev.json."
                for field in ["kafka_bootstrap", "http", "token"] {
                    assert!(
                        server.info[field].as_str().is_some_and(|v| !v.is_empty()),
                        "dev.json has no {field}: {}",
                        server.info
                    );
                }
                assert!(server.token().starts_with("rtk_"), "{}", server.info);
                dev = Some(server);
            }
            Step::Cli(args) => {
                assert!(dev.is_some(), "readme_steps puts `retrace dev` first");
                let cli = Cli { dir: dir.path() };
                // A transaction the demo failed at validation: its replay passes.
                let transaction = failed.get_or_insert_with(|| cli.failed_at_validation());
                let args: Vec<String> = args
                    .iter()
                    .map(|a| match a.as_str() {
                        "<transaction-id>" => transaction.clone(),
                        other => other.to_owned(),
                    })
                    .collect();
                match args[0].as_str() {
                    "failed" => cli.check_failed(&args, transaction),
                    "trace" => cli.check_trace(&args, transaction, replayed),
                    "replay" => {
                        cli.check_replay(&args, transaction);
                        replayed = true;
                    }
                    other => unreachable!("readme_steps lets no `retrace {other}` through"),
                }
            }
            Step::HelmInstall(args) => installed = Some(check_helm_install(args)),
            Step::HelmTest => {
                let objects = installed
                    .as_ref()
                    .expect("readme_steps puts the install first");
                assert!(
                    objects.iter().any(|o| o["kind"] == "Pod"
                        && o["metadata"]["annotations"]["helm.sh/hook"] == "test"),
                    "`helm test` runs the release's test pods: the install renders none"
                );
            }
        }
    }
    assert!(dev.is_some(), "the README starts no `retrace dev --demo`");
    assert!(replayed, "the README replays nothing");
}

/// What one README command is, for this test.
#[derive(Debug)]
enum Step {
    /// `retrace dev --demo`.
    Dev,
    /// `retrace failed|trace|replay ...` against the dev server, as written (with
    /// `<transaction-id>` still in it).
    Cli(Vec<String>),
    /// `helm install NAME CHART ...`: with no cluster here, rendered with the same arguments
    /// (`helm template`); `tests/scenarios/helm.rs` starts such a render's pods for real.
    HelmInstall(Vec<String>),
    /// `helm test NAME ...`: the install's render has test pods (that test runs their script).
    HelmTest,
}

/// `helm install` as `helm template` with the same arguments: the archive it renders reads
/// Kafka where the README's `--set kafka.bootstrap=` says.
fn check_helm_install(args: &[String]) -> Vec<serde_json::Value> {
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--create-namespace")
        .collect();
    let bootstrap = args
        .iter()
        .find_map(|a| a.strip_prefix("kafka.bootstrap="))
        .expect("the README's install sets kafka.bootstrap");
    let objects = retrace_tests::helm::template(&args);
    let archive = objects
        .iter()
        .find(|o| o["kind"] == "StatefulSet")
        .expect("the install renders the archive's StatefulSet");
    let env = &archive["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "RETRACE_KAFKA_BOOTSTRAP" && e["value"] == bootstrap),
        "the archive does not read Kafka at {bootstrap}: {env}"
    );
    objects
}

/// The README's commands this test runs, in order; fails naming every command it neither
/// runs nor finds in [`NOT_RUN_HERE`], and every entry of that list not in the README or not
/// in `.ci/run`.
fn readme_steps(readme: &str) -> Vec<(ShellCommand, Step)> {
    let commands = shell_commands(readme, "README.md");
    assert!(!commands.is_empty(), "no `sh` block found in the README");
    let mut problems = Vec::new();
    let mut steps = Vec::new();
    for command in commands {
        let written = command.words.join(" ");
        if NOT_RUN_HERE.iter().any(|(listed, _)| *listed == written) {
            continue;
        }
        match command.words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["helm", "install", ..] => {
                steps.push((
                    command.clone(),
                    Step::HelmInstall(command.words[2..].to_vec()),
                ));
                continue;
            }
            ["helm", "test", ..] => {
                if !steps.iter().any(|(_, s)| matches!(s, Step::HelmInstall(_))) {
                    problems.push(format!(
                        "README.md:{}: `helm test` comes before `helm install`",
                        command.line
                    ));
                }
                steps.push((command.clone(), Step::HelmTest));
                continue;
            }
            _ => {}
        }
        let Some(args) = RETRACE.iter().find_map(|prefix| {
            let matches = command.words.len() > prefix.len()
                && command.words.iter().zip(prefix.iter()).all(|(w, p)| w == p);
            matches.then(|| command.words[prefix.len()..].to_vec())
        }) else {
            problems.push(format!(
                "README.md:{}: `{}` is neither run by this test nor in its NOT_RUN_HERE list: \
                 run it here, or list it with the reason",
                command.line, command.text
            ));
            continue;
        };
        let step = match args[0].as_str() {
            "dev" if args == ["dev", "--demo"] => Step::Dev,
            "failed" | "trace" | "replay" => Step::Cli(args),
            _ => {
                problems.push(format!(
                    "README.md:{}: this test does not run `retrace {}` yet: teach it to, and \
                     check what the README says it does",
                    command.line,
                    args.join(" ")
                ));
                continue;
            }
        };
        if matches!(step, Step::Cli(_)) && !steps.iter().any(|(_, s)| matches!(s, Step::Dev)) {
            problems.push(format!(
                "README.md:{}: `{}` comes before `retrace dev --demo`, which it needs",
                command.line, command.text
            ));
        }
        steps.push((command, step));
    }

    let ci: Vec<String> = read(".ci/run")
        .lines()
        .map(|l| l.split(" #").next().unwrap().trim().to_owned())
        .collect();
    for (listed, why) in NOT_RUN_HERE {
        let in_readme = shell_commands(readme, "README.md")
            .iter()
            .any(|c| c.words.join(" ") == *listed);
        if !in_readme {
            problems.push(format!(
                "NOT_RUN_HERE lists `{listed}`, which the README no longer has: remove it"
            ));
        }
        if !ci.iter().any(|line| line == listed) {
            problems.push(format!(
                "`{listed}` is not run here ({why}), so .ci/run must run it, as a line of its own"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    steps
}

/// The `retrace` CLI as the README's reader runs it: in the directory holding
/// `retrace-data/`, with no token of their own.
struct Cli<'a> {
    dir: &'a Path,
}

impl Cli<'_> {
    fn command(&self) -> assert_cmd::Command {
        let mut command = assert_cmd::Command::new(env!("CARGO_BIN_EXE_retrace"));
        command
            .current_dir(self.dir)
            // The README's reader names no server: the CLI finds it in retrace-data/dev.json.
            .env_remove("RETRACE_SERVER")
            .env_remove("RETRACE_TOKEN")
            .env_remove("RETRACE_DATA_DIR")
            .env("TZ", "UTC")
            .timeout(PATIENCE);
        command
    }

    /// `retrace args...`, standard input not a terminal.
    fn run(&self, args: &[String]) -> Run {
        let output = self.command().args(args).write_stdin("").output().unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }

    /// The newest transaction the demo failed at validation, once there is one.
    fn failed_at_validation(&self) -> String {
        let args = ["failed", "--since", "10m", "--json"].map(String::from);
        wait_for(
            "the demo to fail a registration at validation",
            PATIENCE,
            || {
                let run = self.run(&args);
                let listed: serde_json::Value = serde_json::from_str(&run.stdout).ok()?;
                listed
                    .as_array()?
                    .iter()
                    .find(|t| t["failure"]["consumer"] == "validation")
                    .and_then(|t| t["transaction_id"].as_str())
                    .map(str::to_owned)
            },
        )
    }

    /// "what failed, where, why"
    fn check_failed(&self, args: &[String], transaction: &str) {
        let run = self.run(args);
        assert_exit(&run, 0);
        let row = run
            .stdout
            .lines()
            .find(|l| l.contains(transaction))
            .unwrap_or_else(|| panic!("{transaction} is not listed: {run:#?}"));
        for shown in ["registrations", "validation", "population register"] {
            assert!(row.contains(shown), "the row lacks {shown:?}: {row}");
        }
    }

    /// "its timeline and causation tree"; after the replay, the replayed copy and `ok`.
    fn check_trace(&self, args: &[String], transaction: &str, replayed: bool) {
        let run = self.run(args);
        assert_exit(&run, 0);
        for shown in ["Timeline", "Causation", "validation: failed"] {
            assert!(run.stdout.contains(shown), "no {shown:?}: {run:#?}");
        }
        if !replayed {
            assert!(
                run.stdout
                    .contains(&format!("Transaction {transaction}: FAILED")),
                "{run:#?}"
            );
            assert!(
                run.stdout.contains(
                    "Failed at registrations / birth.registration.submitted.v1 / validation"
                ),
                "the trace names the failed step: {run:#?}"
            );
        }
    }

    /// "The replay shows its plan (which messages, to which topics), asks for confirmation
    /// (`--yes` does not ask), then re-publishes; `retrace trace` then shows the replayed
    /// copy, and the status turns `ok` once the consumer handles it."
    fn check_replay(&self, args: &[String], transaction: &str) {
        // Where nobody can answer, it shows the plan and replays nothing.
        let unasked = self.run(args);
        assert_exit(&unasked, 2);
        assert!(
            unasked
                .stdout
                .contains("Replay plan: 1 message of 1 transaction")
                && unasked.stdout.contains("registrations → registrations"),
            "{unasked:#?}"
        );
        assert!(unasked.stderr.contains("--yes"), "{unasked:#?}");

        // On a terminal, it asks, and the reader answers y.
        let run = match self.run_answering_yes(args) {
            Some(run) => {
                assert!(run.stdout.contains("[y/N]"), "it asks: {run:#?}");
                run
            }
            None => {
                eprintln!("no `script` here for a terminal: replaying with --yes instead");
                let mut args = args.to_vec();
                args.push("--yes".to_owned());
                self.run(&args)
            }
        };
        assert_exit(&run, 0);
        assert!(
            run.stdout.contains("replay id: ")
                && run.stdout.contains("state: done, 1 of 1 message published"),
            "{run:#?}"
        );

        let trace = ["trace".to_owned(), transaction.to_owned()];
        wait_for(
            "the replayed registration to be validated",
            PATIENCE,
            || {
                let run = self.run(&trace);
                (run.code == 0
                    && run
                        .stdout
                        .contains(&format!("Transaction {transaction}: ok"))
                    && run.stdout.contains("↻ replayed to registrations")
                    && run.stdout.contains("validation: processed"))
                .then_some(())
            },
        );
    }

    /// `retrace args...` on a pseudo-terminal (util-linux `script`), typing `y` at its
    /// question; `None` when there is no `script`.
    fn run_answering_yes(&self, args: &[String]) -> Option<Run> {
        let script = ["/usr/bin/script", "/bin/script"]
            .into_iter()
            .find(|p| Path::new(p).exists())?;
        let line: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_retrace").to_owned())
            .chain(args.iter().cloned())
            .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
            .collect();
        let mut command = std::process::Command::new(script);
        command
            .current_dir(self.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TZ", "UTC")
            .env("TERM", "dumb")
            .args(["-q", "-e", "-c", &line.join(" "), "/dev/null"]);
        let output = assert_cmd::Command::from_std(command)
            .write_stdin("y\n")
            .timeout(PATIENCE)
            .output()
            .unwrap();
        Some(Run {
            code: output.status.code().unwrap_or(-1),
            // The terminal turns \n into \r\n.
            stdout: String::from_utf8_lossy(&output.stdout).replace('\r', ""),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// One command of a markdown file's shell blocks.
#[derive(Debug, Clone)]
struct ShellCommand {
    /// 1-based line in the file.
    line: usize,
    /// As written, without its comment.
    text: String,
    words: Vec<String>,
}

/// The commands of `markdown`'s `sh` (or `bash`, `shell`) code blocks, one a line (a line
/// ending in `\` continues on the next). Fails on a code block without a language, which
/// could hold commands nobody checks, and on a line a simple-command parser cannot split.
fn shell_commands(markdown: &str, file: &str) -> Vec<ShellCommand> {
    let mut commands = Vec::new();
    let mut fence: Option<String> = None;
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            match fence {
                None => {
                    let language = trimmed.trim_start_matches('`').trim().to_owned();
                    assert!(
                        !language.is_empty(),
                        "{file}:{number}: a code block without a language; mark commands `sh`"
                    );
                    fence = Some(language);
                }
                Some(_) => fence = None,
            }
            continue;
        }
        if !matches!(fence.as_deref(), Some("sh" | "bash" | "shell")) {
            continue;
        }
        let (start, mut text) = match pending.take() {
            Some((start, before)) => (start, before + " " + line.trim()),
            None => (number, line.trim().to_owned()),
        };
        if let Some(continued) = text.strip_suffix('\\') {
            text = continued.trim_end().to_owned();
            pending = Some((start, text));
            continue;
        }
        let words = shell_words(&text).unwrap_or_else(|e| panic!("{file}:{start}: `{text}`: {e}"));
        if words.is_empty() {
            continue; // blank, or a comment alone
        }
        let without_comment = match text.find(" #") {
            Some(at) if words.iter().all(|w| !w.contains(" #")) => text[..at].trim_end(),
            _ => text.as_str(),
        };
        commands.push(ShellCommand {
            line: start,
            text: without_comment.to_owned(),
            words,
        });
    }
    commands
}

/// Splits a simple command into words as `sh` would: single quotes, double quotes, backslash
/// escapes, and a `#` starting a word begins a comment. A `<name>` word is a placeholder the
/// reader fills in. Refuses what only a shell can run (pipes, redirections, `;`, `&`,
/// variables, substitutions): the README's commands stay ones a test can run as written.
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                words.extend(word.take());
            }
            '#' if word.is_none() => break,
            '\'' => {
                let word = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a single quote is not closed".to_owned()),
                    }
                }
            }
            '"' => {
                let word = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("a double quote is not closed".to_owned()),
                        },
                        Some('$' | '`') => {
                            return Err("a substitution needs a shell; write the value".into());
                        }
                        Some(c) => word.push(c),
                        None => return Err("a double quote is not closed".to_owned()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("a line ends in a lone backslash".to_owned()),
            },
            '<' if word.is_none() => {
                let rest: String = chars.clone().take_while(|c| !c.is_whitespace()).collect();
                let name = rest.strip_suffix('>').unwrap_or_default();
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                {
                    return Err("`<` is a redirection, which needs a shell".to_owned());
                }
                words.push(format!("<{rest}"));
                for _ in 0..rest.chars().count() {
                    chars.next();
                }
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' => {
                return Err(format!(
                    "`{c}` needs a shell; keep README commands simple ones a test runs"
                ));
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[test]
fn shell_words_splits_as_sh_does_and_refuses_what_needs_a_shell() {
    let words = |line: &str| shell_words(line).unwrap();
    assert_eq!(
        words(r#"retrace replay <transaction-id> --reason "renderer back up"   # a comment"#),
        [
            "retrace",
            "replay",
            "<transaction-id>",
            "--reason",
            "renderer back up"
        ]
    );
    assert_eq!(
        words(r#"a 'b c'd "e \"f\" \\g" h\ i x#y"#),
        ["a", "b cd", r#"e "f" \g"#, "h i", "x#y"]
    );
    assert_eq!(words("   # only a comment"), Vec::<String>::new());
    for shell_only in [
        "a | b",
        "a > file",
        "a < file",
        "a && b",
        "a; b",
        "echo $HOME",
        r#"echo "$(date)""#,
        "ls *.rs",
        "'open",
    ] {
        assert!(shell_words(shell_only).is_err(), "{shell_only}");
    }
    let commands = shell_commands(
        "text\n```sh\nretrace failed \\\n  --since 10m   # why\n\n# alone\n```\n```toml\nx = 1\n```\n",
        "t.md",
    );
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert_eq!(commands[0].line, 3);
    assert_eq!(commands[0].text, "retrace failed --since 10m");
    assert_eq!(commands[0].words, ["retrace", "failed", "--since", "10m"]);
}

#[test]
#[should_panic(expected = "`rm -rf retrace-data` is neither run by this test nor")]
fn a_readme_command_the_test_does_not_run_fails_it() {
    readme_steps(
        "```sh\ntests/setup\ncargo test --workspace --locked\n```\n\
         ```sh\nretrace dev --demo\nrm -rf retrace-data\n```\n",
    );
}
