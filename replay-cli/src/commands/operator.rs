//! The person at the terminal: asking them before an action that moves messages
//! ([`confirm`]). Shared by `retrace replay` and `retrace jobs redrive`.

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
