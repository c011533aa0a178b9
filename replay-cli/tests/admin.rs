//! `retrace token`, `retrace audit` and `retrace erase` against an archive with
//! authentication on (the bootstrap admin token, on librdkafka's mock cluster): tokens are
//! created, listed and revoked, the audit trail is read and verified, a token without the
//! permission is refused, and an erasure of a subject with nothing archived says so.

mod common;

use common::{assert_exit, retrace_as};
use retrace_tests::{Broker, RunningArchive, on_every_broker};

async fn tokens_audit_and_erasure_as_admin_and_analyst(broker: Broker) {
    // The mock cluster has no admin API: the token topic is created here.
    broker
        .create_topic(retrace_auth::DEFAULT_TOKENS_TOPIC, 1)
        .await;
    let (admin, digest) = retrace_auth::generate();
    let archive = RunningArchive::start_with(&broker, |config| {
        config.auth.enabled = true;
        config.auth.bootstrap_admin_sha256 = Some(digest);
    })
    .await;
    let server = archive.url("");

    // Without a token, or with a wrong one: refused, a usage error.
    let refused = retrace_as(&server, "rtk_nope_nope", &["audit"]).await;
    assert_exit(&refused, 2);
    assert!(
        refused.stderr.contains("did not accept the API token"),
        "{refused:#?}"
    );

    // Create: the summary on stderr, the token alone on stdout's last line.
    let created = retrace_as(
        &server,
        &admin,
        &[
            "token",
            "create",
            "--name",
            "ana",
            "--role",
            "analyst",
            "--expires-in",
            "30d",
        ],
    )
    .await;
    assert_exit(&created, 0);
    let ana = created.stdout.lines().last().unwrap().trim().to_owned();
    assert!(ana.starts_with("rtk_"), "{created:#?}");
    assert!(
        created.stderr.contains("(ana), role analyst"),
        "{created:#?}"
    );
    assert!(
        !created.stderr.contains(&ana),
        "the token only on stdout: {created:#?}"
    );

    // A second token with the same name is refused (409: nothing to do).
    let again = retrace_as(
        &server,
        &admin,
        &["token", "create", "--name", "ana", "--role", "analyst"],
    )
    .await;
    assert_exit(&again, 1);

    // List: ana, live, and never a secret.
    let list = retrace_as(&server, &admin, &["token", "list"]).await;
    assert_exit(&list, 0);
    let row = list
        .stdout
        .lines()
        .find(|l| l.contains(" ana "))
        .unwrap_or_else(|| panic!("{list:#?}"));
    assert!(
        row.contains("analyst") && row.trim_end().ends_with('-'),
        "{list:#?}"
    );
    assert!(!list.stdout.contains(&ana), "{list:#?}");
    let json = retrace_as(&server, &admin, &["token", "list", "--json"]).await;
    assert_exit(&json, 0);
    let tokens: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    assert!(tokens.iter().any(|t| t["name"] == "ana"), "{json:#?}");

    // The analyst may not read the audit trail: 403, a usage error.
    let denied = retrace_as(&server, &ana, &["audit"]).await;
    assert_exit(&denied, 2);
    assert!(
        denied.stderr.starts_with("retrace: not allowed"),
        "{denied:#?}"
    );

    // The admin reads it: the token's creation, and the analyst's denial, are in it.
    let trail = retrace_as(&server, &admin, &["audit"]).await;
    assert_exit(&trail, 0);
    assert!(trail.stdout.starts_with("TIME (UTC)"), "{trail:#?}");
    assert!(trail.stdout.contains("token.create"), "{trail:#?}");
    assert!(trail.stdout.contains("denied"), "{trail:#?}");
    let one = retrace_as(&server, &admin, &["audit", "--limit", "1", "--json"]).await;
    assert_exit(&one, 0);
    let records: Vec<serde_json::Value> = serde_json::from_str(&one.stdout).unwrap();
    assert_eq!(records.len(), 1, "{one:#?}");
    let by_actor = retrace_as(&server, &admin, &["audit", "--actor", "nobody-at-all"]).await;
    assert_exit(&by_actor, 0);
    assert_eq!(by_actor.stdout, "no audit records matched\n");

    let verify = retrace_as(&server, &admin, &["audit", "verify"]).await;
    assert_exit(&verify, 0);
    assert!(
        verify.stdout.starts_with("audit trail intact: "),
        "{verify:#?}"
    );
    assert!(
        verify.stdout.trim_end().ends_with(" records"),
        "{verify:#?}"
    );

    // Revoke by name: ana's token is refused from then on.
    let revoked = retrace_as(&server, &admin, &["token", "revoke", "ana"]).await;
    assert_exit(&revoked, 0);
    assert!(revoked.stdout.starts_with("revoked token "), "{revoked:#?}");
    let gone = retrace_as(&server, &ana, &["subject", "beneficiary:1"]).await;
    assert_exit(&gone, 2);
    let twice = retrace_as(&server, &admin, &["token", "revoke", "ana"]).await;
    assert_exit(&twice, 1);

    // Erasure asks first; with nothing archived for the subject the server answers 404:
    // nothing to do, exit 1, saying nothing was erased.
    let unasked = retrace_as(
        &server,
        &admin,
        &["erase", "--subject", "beneficiary:1", "--reason", "x"],
    )
    .await;
    assert_exit(&unasked, 2);
    assert!(unasked.stderr.contains("--yes"), "{unasked:#?}");
    let erase = retrace_as(
        &server,
        &admin,
        &[
            "erase",
            "--subject",
            "beneficiary:1",
            "--reason",
            "x",
            "--yes",
        ],
    )
    .await;
    assert_exit(&erase, 1);
    assert!(erase.stderr.contains("nothing was erased"), "{erase:#?}");

    archive.shut_down().await;
}

on_every_broker!(tokens_audit_and_erasure_as_admin_and_analyst);
