//! compose.yaml and the Dockerfile against the code: every Retrace service compose runs is a
//! real binary, every `RETRACE_*` variable it or the image sets is one that service reads, and
//! each service's configuration (its environment, and the file `RETRACE_CONFIG` mounts)
//! resolves with the service's own configuration type.
//!
//! This binary holds one test on purpose: it sets process environment variables, which is
//! only sound while no other thread reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, FromArgMatches};
use serde_norway::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_owned()
}

/// One service of compose.yaml, as far as this check cares.
struct Service {
    name: String,
    builds_retrace: bool,
    binary: Option<String>,
    /// `None`: passed through from compose's own environment when set there.
    environment: BTreeMap<String, Option<String>>,
    /// Mount target → source on the host, for bind mounts of files in the repository.
    mounts: BTreeMap<String, PathBuf>,
}

fn services() -> Vec<Service> {
    let path = workspace().join("compose.yaml");
    let text = std::fs::read_to_string(&path).expect("compose.yaml is at the workspace root");
    let mut compose: Value = serde_norway::from_str(&text).expect("compose.yaml is YAML");
    compose
        .apply_merge()
        .expect("compose.yaml's `<<:` merges resolve");
    let services = compose["services"]
        .as_mapping()
        .expect("compose.yaml has services");
    services
        .iter()
        .map(|(name, service)| {
            let name = name.as_str().expect("service names are strings").to_owned();
            let environment = service["environment"]
                .as_mapping()
                .into_iter()
                .flatten()
                .map(|(key, value)| {
                    let key = key.as_str().expect("variable names are strings").to_owned();
                    let value = match value {
                        Value::String(text) => Some(interpolate(&name, &key, text)),
                        Value::Number(number) => Some(number.to_string()),
                        Value::Bool(flag) => Some(flag.to_string()),
                        Value::Null => None,
                        other => {
                            panic!("{name}: {key} has a value of an unexpected kind: {other:?}")
                        }
                    };
                    (key, value)
                })
                .collect();
            let mounts = service["volumes"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|volume| {
                    let mut parts = volume.as_str()?.split(':');
                    let source = parts.next()?;
                    let target = parts.next()?;
                    let source = source.strip_prefix("./")?;
                    Some((target.to_owned(), workspace().join(source)))
                })
                .collect();
            Service {
                builds_retrace: service.get("build").is_some(),
                binary: service["command"][0].as_str().map(str::to_owned),
                environment,
                mounts,
                name,
            }
        })
        .collect()
}

/// The `RETRACE_*` variables the image's `ENV` instructions set: every service inherits them.
fn image_env_vars() -> Vec<String> {
    retrace_tests::helm::image_env()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("RETRACE_"))
        .collect()
}

/// The value compose gives `${NAME:-default}` when NAME is unset; a plain value as is.
fn interpolate(service: &str, key: &str, text: &str) -> String {
    let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        assert!(
            !text.contains("${"),
            "{service}: {key} = {text:?}: only a whole `${{NAME:-default}}` is understood here"
        );
        return text.to_owned();
    };
    let (_, default) = inner.split_once(":-").unwrap_or_else(|| {
        panic!("{service}: {key} = {text:?} needs a default (`${{NAME:-default}}`)")
    });
    default.to_owned()
}

/// Why `service`'s environment does not fit its configuration type `A`, if it does not.
fn problems_with<A: Args + FromArgMatches>(
    service: &Service,
    binary: &str,
    resolve: impl FnOnce(A) -> Result<(), String>,
) -> Vec<String> {
    let names = service.environment.keys().cloned().chain(image_env_vars());
    let mut problems: Vec<String> = retrace_service::unknown_env_vars::<A>(names)
        .into_iter()
        .map(|name| format!("{}: {binary} does not read {name}", service.name))
        .collect();
    // Pass-through variables are checked by name only: their values live elsewhere.
    let mut environment: BTreeMap<&str, String> = service
        .environment
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.clone()?)))
        .collect();
    if let Some(config) = environment.get_mut("RETRACE_CONFIG") {
        match service.mounts.get(config.as_str()) {
            Some(source) => *config = source.display().to_string(),
            None => problems.push(format!(
                "{}: RETRACE_CONFIG={config} is not a file mounted from the repository",
                service.name
            )),
        }
    }
    for (name, value) in &environment {
        // SAFETY: this binary's only test runs on one thread; nothing reads the environment
        // concurrently.
        unsafe { std::env::set_var(name, value) };
    }
    let command = A::augment_args(clap::Command::new("service"));
    let resolved = command
        .try_get_matches_from([binary])
        .and_then(|matches| A::from_arg_matches(&matches))
        .map_err(|e| e.to_string())
        .and_then(resolve);
    if let Err(error) = resolved {
        problems.push(format!(
            "{}: {binary} refuses its configuration: {error}",
            service.name
        ));
    }
    for name in environment.keys() {
        // SAFETY: as above.
        unsafe { std::env::remove_var(name) };
    }
    problems
}

#[test]
fn every_retrace_service_in_compose_reads_all_its_environment() {
    // Variables of the developer's own shell must not stand in for missing ones in compose.
    for (name, _) in std::env::vars() {
        if name.starts_with("RETRACE_") {
            // SAFETY: see problems_with.
            unsafe { std::env::remove_var(name) };
        }
    }
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for service in services() {
        let binary = service.binary.as_deref();
        let found = match binary {
            Some(binary @ "retrace-archive") => {
                problems_with::<retrace_archive::ArchiveArgs>(&service, binary, |args| {
                    args.resolve().map(drop).map_err(|e| e.to_string())
                })
            }
            Some(binary @ "retrace-gateway") => {
                problems_with::<retrace_gateway::GatewayArgs>(&service, binary, |args| {
                    args.resolve().map(drop).map_err(|e| e.to_string())
                })
            }
            Some(binary @ "retrace-worker") => {
                problems_with::<retrace_worker::WorkerArgs>(&service, binary, |args| {
                    args.resolve().map(drop).map_err(|e| e.to_string())
                })
            }
            _ if service.builds_retrace => vec![format!(
                "{}: runs {binary:?}, which is not a Retrace service binary",
                service.name
            )],
            _ => service
                .environment
                .keys()
                .filter(|name| name.starts_with("RETRACE_"))
                .map(|name| format!("{}: is not a Retrace service but sets {name}", service.name))
                .collect(),
        };
        if let Some(binary) = binary.filter(|b| b.starts_with("retrace-")) {
            checked.push(binary.to_owned());
        }
        problems.extend(found);
    }
    assert!(
        problems.is_empty(),
        "compose.yaml and the Dockerfile:\n{}",
        problems.join("\n")
    );
    checked.sort();
    assert_eq!(
        checked,
        [
            "retrace-archive",
            "retrace-archive",
            "retrace-gateway",
            "retrace-worker"
        ],
        "compose.yaml runs two archive replicas and each other service once"
    );
    let replica_ids: std::collections::BTreeSet<Option<String>> = services()
        .into_iter()
        .filter(|s| s.binary.as_deref() == Some("retrace-archive"))
        .map(|s| {
            s.environment
                .get("RETRACE_ARCHIVE_REPLICA_ID")
                .cloned()
                .flatten()
        })
        .collect();
    assert_eq!(
        replica_ids.len(),
        2,
        "each archive replica has an id of its own: {replica_ids:?}"
    );
}
