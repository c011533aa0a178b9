//! The administrator's commands: `retrace token` (create, list, revoke API tokens),
//! `retrace audit` (read the audit trail, and `verify` its hash chain) and `retrace erase`
//! (remove a subject's payloads from the archive). Each one is a call of the archive's
//! `/v1/tokens`, `/v1/audit` and `/v1/subjects/{id}/erase` routes, which need an admin token.

use jiff::tz::TimeZone;
use retrace_api::AuditReport;
use retrace_api::{
    AuditView, CreateTokenRequest, CreatedToken, EraseRequest, ErasureView, Page, TokenView,
};

use super::client::{Client, Request, Server};
use super::operator::{Action, confirm};
use super::{MAX_PAGE, print, print_json, render};
use crate::Failure;

const ERASE: Action = Action {
    verb: "erase",
    doing: "erasing",
    done: "erased",
};

#[derive(clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// Issue an API token: a summary on stderr, the token alone on stdout's last line (it is
    /// shown this once).
    Create(CreateArgs),
    /// List the API tokens (never their secrets), revoked and expired ones included.
    List(ListArgs),
    /// Revoke an API token, by its id or the name of a live token.
    Revoke(RevokeArgs),
}

#[derive(clap::Args)]
struct CreateArgs {
    /// Unique among live tokens, e.g. `billing-service`.
    #[arg(long)]
    name: String,
    /// publisher, analyst, support or admin.
    #[arg(long)]
    role: String,
    /// A permission beyond the role, e.g. `payload:read`; repeat for more.
    #[arg(long = "extra", value_name = "PERMISSION")]
    extra: Vec<String>,
    /// A topic a publisher may publish to; repeat for more (default: any topic).
    #[arg(long = "topic", value_name = "TOPIC")]
    topics: Vec<String>,
    /// The token expires this long from now: 90s, 15m, 2h, 30d (default: never).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_s)]
    expires_in: Option<u64>,
}

#[derive(clap::Args)]
struct ListArgs {
    /// Print the tokens as a JSON array.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct RevokeArgs {
    // Not named `token`: that is the id of the global `--token` argument, which it would hide.
    /// The token's id, or the name of a live token.
    #[arg(value_name = "ID_OR_NAME")]
    id_or_name: String,
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// Only records since this time: RFC 3339 or a duration back from now (90m, 24h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Only records of this actor (a token's name, or an OIDC user).
    #[arg(long)]
    actor: Option<String>,
    /// Only records done to this target: a subject, transaction or token id.
    #[arg(long, value_name = "ID")]
    subject: Option<String>,
    /// List at most this many records, oldest first.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Print the records as a JSON array.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum AuditCommand {
    /// Walk the audit trail's hash chain: exit 0 when intact, 1 naming each problem.
    Verify,
}

#[derive(clap::Args)]
pub struct EraseArgs {
    /// The subject whose payloads to erase, e.g. `beneficiary:42`.
    #[arg(long, value_name = "ID")]
    subject: String,
    /// Why (the request's reference), for the audit trail (required).
    #[arg(long)]
    reason: String,
    /// Erase without asking for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

pub async fn token(server: &Server, args: TokenArgs) -> Result<(), Failure> {
    let client = Client::new(server)?;
    match args.command {
        TokenCommand::Create(args) => create_token(&client, args).await,
        TokenCommand::List(args) => list_tokens(&client, args).await,
        TokenCommand::Revoke(args) => revoke_token(&client, args).await,
    }
}

async fn create_token(client: &Client, args: CreateArgs) -> Result<(), Failure> {
    let body = CreateTokenRequest {
        name: args.name,
        role: args.role,
        extra: args.extra,
        topics: (!args.topics.is_empty()).then_some(args.topics),
        expires_in_s: args.expires_in,
    };
    let created: CreatedToken = client.send(Request::post(&["v1", "tokens"], &body)).await?;
    eprint!(
        "{}",
        render::token_created(&created.record, &TimeZone::system())
    );
    print(&format!("{}\n", created.token))
}

async fn list_tokens(client: &Client, args: ListArgs) -> Result<(), Failure> {
    let tokens: Vec<TokenView> = client.send(Request::get(&["v1", "tokens"])).await?;
    if args.json {
        return print_json(&tokens);
    }
    if tokens.is_empty() {
        return print("no API tokens (the bootstrap admin token is not listed)\n");
    }
    print(&render::token_listing(&tokens, &TimeZone::system()))
}

async fn revoke_token(client: &Client, args: RevokeArgs) -> Result<(), Failure> {
    // The server takes an id or the name of a live token.
    let path = ["v1", "tokens", &args.id_or_name, "revoke"];
    let revoked: TokenView = client
        .send(Request::post(&path, &serde_json::json!({})))
        .await?;
    print(&render::token_revoked(&revoked, &TimeZone::system()))
}

pub async fn audit(server: &Server, args: AuditArgs) -> Result<(), Failure> {
    let client = Client::new(server)?;
    if let Some(AuditCommand::Verify) = args.command {
        return verify(&client).await;
    }
    let limit = args.limit as usize;
    let mut items: Vec<AuditView> = Vec::new();
    let mut cursor: Option<String> = None;
    let more = loop {
        let request = Request::get(&["v1", "audit"])
            .query("since", args.since.as_ref())
            .query("actor", args.actor.as_ref())
            .query("target", args.subject.as_ref())
            .query("limit", Some((limit - items.len()).min(MAX_PAGE)))
            .query("cursor", cursor.as_ref());
        let page: Page<AuditView> = client.send(request).await?;
        items.extend(page.items);
        match page.next_cursor {
            Some(next) if items.len() < limit => cursor = Some(next),
            next => break next.is_some(),
        }
    };
    if args.json {
        return print_json(&items);
    }
    if items.is_empty() {
        return print("no audit records matched\n");
    }
    print(&render::audit_listing(&items, &TimeZone::system()))?;
    if more {
        eprintln!(
            "retrace: showing the first {}; pass `retrace audit --limit N` for more",
            items.len()
        );
    }
    Ok(())
}

async fn verify(client: &Client) -> Result<(), Failure> {
    let report: AuditReport = client
        .send(Request::get(&["v1", "audit", "verify"]))
        .await?;
    print(&render::audit_verification(&report))?;
    if report.clean() {
        return Ok(());
    }
    let mut found = Vec::new();
    if !report.chain.problems.is_empty() || !report.chain.intact {
        found.push(format!(
            "{} break{} in the chain",
            report.chain.problems.len(),
            if report.chain.problems.len() == 1 {
                ""
            } else {
                "s"
            }
        ));
    }
    for (count, what) in [
        (report.unsigned.len(), "unsigned"),
        (report.badly_signed.len(), "badly signed"),
    ] {
        if count > 0 {
            found.push(format!(
                "{count}{} {what} audit record{} not chained",
                if report.truncated { "+" } else { "" },
                if count == 1 { "" } else { "s" }
            ));
        }
    }
    Err(Failure::NothingToDo(format!(
        "the audit trail is not clean: {}",
        found.join("; ")
    )))
}

pub async fn erase(server: &Server, args: EraseArgs) -> Result<(), Failure> {
    let client = Client::new(server)?;
    if args.reason.trim().is_empty() {
        return Err(Failure::Usage(
            "--reason is required: say why (the request's reference), for the audit trail"
                .to_owned(),
        ));
    }
    confirm(
        args.yes,
        &ERASE,
        &format!(
            "Erase the payload of every archived record naming {}? This cannot be undone.",
            args.subject
        ),
    )
    .await?;
    let path = ["v1", "subjects", &args.subject, "erase"];
    let body = EraseRequest {
        reason: args.reason,
    };
    let erased: ErasureView = client.send(Request::post(&path, &body)).await?;
    print(&render::erasure(&erased, &TimeZone::system()))
}

/// `90s`, `15m`, `2h`, `30d` (or a number of seconds) → seconds.
fn parse_duration_s(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_s = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?} is not a duration such as 90s, 15m, 2h or 30d"
            ));
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90s, 15m, 2h or 30d"))?;
    match n.checked_mul(unit_s) {
        Some(0) => Err("the duration must be longer than 0s".to_owned()),
        Some(s) => Ok(s),
        None => Err(format!("{text:?} is too long")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration_s;

    #[test]
    fn expiries_are_durations() {
        assert_eq!(parse_duration_s("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration_s("2h"), Ok(7_200));
        assert_eq!(parse_duration_s("15m"), Ok(900));
        assert_eq!(parse_duration_s("90s"), Ok(90));
        assert_eq!(parse_duration_s("45"), Ok(45));
        assert!(parse_duration_s("0d").is_err());
        assert!(parse_duration_s("3w").is_err());
        assert!(parse_duration_s("d").is_err());
    }
}
