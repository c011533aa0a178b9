//! `retrace kafka acls --print | --apply`: the Kafka ACLs of a deployment (Retrace's services
//! under their own principals, and the applications around them), printed, or created
//! through Kafka's admin API. The set itself is `retrace_sdk::acls`; docs/security.md
//! ("Kafka ACLs") explains it.

use retrace_sdk::KafkaSettings;
use retrace_sdk::acls::{
    AclPlan, DEFAULT_ARCHIVE_PRINCIPAL, DEFAULT_GATEWAY_PRINCIPAL, DEFAULT_WORKER_PRINCIPAL,
    create_acls,
};

use crate::Failure;

#[derive(clap::Args)]
pub struct KafkaArgs {
    #[command(subcommand)]
    command: KafkaCommand,
}

#[derive(clap::Subcommand)]
enum KafkaCommand {
    /// The ACLs of Retrace's services and of the applications around them: --print them, or
    /// --apply them through Kafka's admin API.
    Acls(AclsArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["print", "apply"])))]
struct AclsArgs {
    /// Print the ACLs, one a line, grouped by principal with what each is for.
    #[arg(long)]
    print: bool,
    /// Create the ACLs on Kafka (ACLs that exist already are left as they are), as the
    /// principal of --kafka-property: it needs ALTER on the cluster (a super user).
    #[arg(long)]
    apply: bool,
    /// The archive's principal (also the token service: it writes the tokens topic).
    #[arg(long, default_value = DEFAULT_ARCHIVE_PRINCIPAL)]
    archive_principal: String,
    #[arg(long, default_value = DEFAULT_GATEWAY_PRINCIPAL)]
    gateway_principal: String,
    #[arg(long, default_value = DEFAULT_WORKER_PRINCIPAL)]
    worker_principal: String,
    /// Application topics published through the gateway (and replayed by the archive):
    /// NAME, or PREFIX* for every topic starting with PREFIX (repeat, or comma-separate).
    /// Producers' and consumers' topics are application topics too.
    #[arg(long = "topic", value_name = "TOPIC")]
    topics: Vec<String>,
    /// The job queues enqueued through the gateway: the gateway and the archive may then
    /// write only their lanes. Without any, they may write every `retrace.jobs.*` topic.
    #[arg(long = "queue", value_name = "QUEUE")]
    queues: Vec<String>,
    /// An application publishing straight to Kafka: PRINCIPAL=TOPIC[,TOPIC…] (repeat).
    #[arg(long = "producer", value_name = "PRINCIPAL=TOPICS")]
    producers: Vec<String>,
    /// An application consuming with the SDK (and so reporting outcomes):
    /// PRINCIPAL=GROUP:TOPIC[,TOPIC…] (repeat; GROUP may be PREFIX*).
    #[arg(long = "consumer", value_name = "PRINCIPAL=GROUP:TOPICS")]
    consumers: Vec<String>,
    /// `[auth] tokens_topic` of the services.
    #[arg(long, default_value = retrace_auth::DEFAULT_TOKENS_TOPIC)]
    tokens_topic: String,
    /// `[archive] group`.
    #[arg(long, default_value = "retrace-archive")]
    archive_group: String,
    /// With --apply: Kafka bootstrap servers, host:port[,host:port].
    #[arg(
        long,
        env = "RETRACE_KAFKA_BOOTSTRAP",
        default_value = "localhost:9092"
    )]
    kafka_bootstrap: String,
    /// With --apply: librdkafka property, name=value (repeat, or comma-separate in the env),
    /// e.g. the admin's `sasl.username`.
    #[arg(
        long = "kafka-property",
        env = "RETRACE_KAFKA_PROPERTIES",
        value_delimiter = ',',
        hide_env_values = true
    )]
    kafka_properties: Vec<String>,
}

pub async fn run(args: KafkaArgs) -> Result<(), Failure> {
    let KafkaCommand::Acls(args) = args.command;
    let plan = plan(&args).map_err(|e| Failure::Usage(e.to_string()))?;
    if args.print {
        print!("{}", render(&plan));
        return Ok(());
    }
    let kafka = KafkaSettings::new(&args.kafka_bootstrap)
        .with_properties(args.kafka_properties.iter().map(String::as_str))
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let acls = plan.acls();
    let created = create_acls(&kafka, &acls)
        .await
        .map_err(|e| Failure::Server(e.to_string()))?;
    for grant in plan.grants() {
        println!(
            "{} {}: {} ACL(s)",
            grant.role,
            grant.principal,
            grant.acls.len()
        );
    }
    println!(
        "{created} ACLs applied on Kafka at {} (existing ones left as they were)",
        kafka.bootstrap_servers
    );
    Ok(())
}

/// The plan the arguments describe.
fn plan(args: &AclsArgs) -> Result<AclPlan, retrace_sdk::acls::AclPlanError> {
    let mut plan = AclPlan::new(&args.tokens_topic);
    plan.archive = args.archive_principal.clone();
    plan.gateway = args.gateway_principal.clone();
    plan.worker = args.worker_principal.clone();
    plan.archive_group = args.archive_group.clone();
    for topics in &args.topics {
        plan = plan.with_topics(topics)?;
    }
    for queues in &args.queues {
        plan = plan.with_queues(queues)?;
    }
    for producer in &args.producers {
        plan = plan.with_producer(producer)?;
    }
    for consumer in &args.consumers {
        plan = plan.with_consumer(consumer)?;
    }
    plan.check()?;
    Ok(plan)
}

/// `--print`'s text: a header, then each principal's ACLs under a comment saying what they
/// are for.
fn render(plan: &AclPlan) -> String {
    let mut out = String::from(
        "# Kafka ACLs for Retrace: each allows, from any host; whatever is not listed, the\n\
         # authorizer refuses. Apply with `retrace kafka acls --apply` and the same options.\n",
    );
    if plan.application_topics().is_empty() {
        out.push_str(
            "# No application topic named (--topic, --producer, --consumer): the gateway and \
             the archive may write none.\n",
        );
    }
    for grant in plan.grants() {
        out.push_str(&format!(
            "\n# {} {}: {}\n",
            grant.role, grant.principal, grant.purpose
        ));
        for acl in &grant.acls {
            out.push_str(&format!("{acl}\n"));
        }
    }
    out
}
