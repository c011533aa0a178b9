//! The person at the terminal: who they are ([`requester`]), and asking them before an
//! action that moves messages ([`confirm`]). Shared by `retrace replay` and `retrace jobs
//! redrive`.

use std::io::IsTerminal as _;

use crate::Failure;

/// An action, in the words a confirmation uses: `replay` / `replaying` / `replayed`.
pub struct Action {
    pub verb: &'static str,
    pub doing: &'static str,
    pub done: &'static str,
}

/// Asks `question` on the terminal, unless `--yes`; refuses to guess when nobody can be
/// asked (standard input is not a terminal): a usage error naming `--yes`.
pub async fn confirm(yes: bool, action: &Action, question: &str) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(format!(
            "standard input is not a terminal, so retrace cannot ask before {}: pass --yes to \
             {} without asking (or --dry-run to only see the plan)",
            action.doing, action.verb
        )));
    }
    eprint!("{question} [y/N] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| Failure::Server(format!("cannot read the answer: {e}")))?
    .map_err(|e| Failure::Server(format!("cannot read the answer: {e}")))?;
    if matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Failure::NothingToDo(format!(
            "not confirmed: nothing was {}",
            action.done
        )))
    }
}

/// Who asks, until the API authenticates callers: `$USER@hostname`.
pub fn requester() -> String {
    let user = ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{user}@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requester_is_user_at_host() {
        let who = requester();
        let (user, host) = who.split_once('@').unwrap();
        assert!(!user.is_empty() && !host.is_empty() && !host.contains('\n'));
    }
}
