//! Keeps failed authentication from flooding the audit trail: anyone can send requests without
//! a valid token, and each used to become an audit record holding its whole path (3,000 bad
//! tokens added 3,001 records in 7 s; 1,000 requests with a 60 KB path, 33 MB).
//!
//! A refusal to authenticate (401) is recorded once per origin address and reason per
//! [`FLOOD_WINDOW`]; the next one recorded after the window says how many were left out in
//! between. The metric and the security log line still count every attempt (the guard emits
//! them before asking here). Every denial's path is cut to [`MAX_TARGET`] characters.
//!
//! The warning that the bootstrap admin token was used is logged the same way
//! ([`BootstrapWarnings`]): a client scripted with it made 6,000 requests a minute, each
//! a warning line, which buried every other line of the security log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::middleware::Denial;

/// One audit record per origin and reason in this long, at most.
pub const FLOOD_WINDOW: Duration = Duration::from_secs(60);
/// The longest path an audit record keeps.
pub const MAX_TARGET: usize = 256;
/// Origins remembered at once; past it, those whose window ended are forgotten, then all.
const ORIGINS: usize = 10_000;

struct Window {
    opened: Instant,
    /// Refusals left out of the trail since `opened`.
    left_out: u64,
}

/// Which 401s reach the audit trail.
#[derive(Default)]
pub(crate) struct FloodGate {
    windows: Mutex<HashMap<(String, &'static str), Window>>,
}

impl FloodGate {
    /// The denial to record, or `None` when an earlier one from the same origin and for the
    /// same reason was recorded less than [`FLOOD_WINDOW`] ago.
    pub fn admit(&self, mut denial: Denial, now: Instant) -> Option<Denial> {
        bound_path(&mut denial.path);
        if denial.status != 401 {
            return Some(denial);
        }
        let key = (address(&denial.origin).to_owned(), denial.reason);
        let mut windows = self.windows.lock().expect("never poisoned");
        if let Some(window) = windows.get_mut(&key) {
            if now.duration_since(window.opened) < FLOOD_WINDOW {
                window.left_out += 1;
                return None;
            }
            if window.left_out > 0 {
                denial.message = format!(
                    "{} (and {} more such refusals from this address in the {} s before, \
                     left out of the audit trail)",
                    denial.message,
                    window.left_out,
                    now.duration_since(window.opened).as_secs()
                );
            }
        }
        if windows.len() >= ORIGINS {
            windows.retain(|_, window| now.duration_since(window.opened) < FLOOD_WINDOW);
            if windows.len() >= ORIGINS {
                windows.clear();
            }
        }
        windows.insert(
            key,
            Window {
                opened: now,
                left_out: 0,
            },
        );
        Some(denial)
    }
}

/// When a use of the bootstrap admin token is logged: the first, then at most one per
/// [`FLOOD_WINDOW`], counting those left out in between. Its metric counts every use.
#[derive(Default)]
pub(crate) struct BootstrapWarnings {
    /// When the last warning was logged, and the uses since that were not.
    last: Mutex<Option<(Instant, u64)>>,
}

/// Whether one use of the bootstrap admin token is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BootstrapWarning {
    /// The first use this process saw.
    First,
    /// The first of a new window: `left_out` uses were not logged in the `since` before it.
    Again { left_out: u64, since: Duration },
    /// Within the window of the last warning: counted only.
    Quiet,
}

impl BootstrapWarnings {
    pub fn used(&self, now: Instant) -> BootstrapWarning {
        let mut last = self.last.lock().expect("never poisoned");
        match &mut *last {
            None => {
                *last = Some((now, 0));
                BootstrapWarning::First
            }
            Some((warned, left_out)) if now.duration_since(*warned) < FLOOD_WINDOW => {
                *left_out += 1;
                BootstrapWarning::Quiet
            }
            Some((warned, left_out)) => {
                let again = BootstrapWarning::Again {
                    left_out: *left_out,
                    since: now.duration_since(*warned),
                };
                *last = Some((now, 0));
                again
            }
        }
    }
}

/// The address of `origin` without its port: one client opens many connections.
fn address(origin: &str) -> &str {
    match origin.rsplit_once(':') {
        // `[::1]:443` and `10.0.0.1:443`, not a bare IPv6 address.
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) && !host.ends_with(':') => {
            host
        }
        _ => origin,
    }
}

fn bound_path(path: &mut String) {
    if path.chars().count() > MAX_TARGET {
        let cut: String = path.chars().take(MAX_TARGET).collect();
        *path = format!("{cut}… ({} bytes)", path.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(origin: &str, reason: &'static str) -> Denial {
        Denial {
            caller: None,
            actor: None,
            origin: origin.to_owned(),
            method: "GET".into(),
            path: "/v1/transactions".into(),
            status: 401,
            reason,
            message: "the token is not valid".into(),
        }
    }

    #[test]
    fn one_record_per_origin_and_reason_per_window_then_the_count_left_out() {
        let gate = FloodGate::default();
        let start = Instant::now();
        let recorded = (0..3_000)
            .filter(|n| {
                let from = format!("10.0.0.1:{}", 40_000 + n % 1000);
                gate.admit(refused(&from, "unknown"), start).is_some()
            })
            .count();
        assert_eq!(
            recorded, 1,
            "one record for 3,000 refusals from one address"
        );
        assert!(
            gate.admit(refused("10.0.0.2:1", "unknown"), start)
                .is_some()
        );
        assert!(
            gate.admit(refused("10.0.0.1:1", "missing"), start)
                .is_some()
        );
        let later = gate
            .admit(refused("10.0.0.1:2", "unknown"), start + FLOOD_WINDOW)
            .expect("a record once the window is over");
        assert!(
            later.message.contains("and 2999 more such refusals"),
            "{}",
            later.message
        );
    }

    #[test]
    fn forbidden_requests_are_all_recorded_with_a_bounded_path() {
        let gate = FloodGate::default();
        let now = Instant::now();
        for _ in 0..3 {
            let mut denial = refused("10.0.0.1:1", "forbidden");
            denial.status = 403;
            denial.path = "/v1/".to_owned() + &"a".repeat(60_000);
            let recorded = gate.admit(denial, now).expect("403s are not rate-limited");
            assert!(
                recorded.path.len() < MAX_TARGET + 40,
                "{}",
                recorded.path.len()
            );
            assert!(
                recorded.path.ends_with("(60004 bytes)"),
                "{}",
                recorded.path
            );
        }
    }

    #[test]
    fn ports_are_not_part_of_the_origin() {
        assert_eq!(address("10.0.0.1:443"), "10.0.0.1");
        assert_eq!(address("[::1]:443"), "[::1]");
        assert_eq!(address("unknown"), "unknown");
    }
}
