//! `CreateAcls` through librdkafka's admin API. rust-rdkafka 0.39 wraps topics, partitions,
//! configs, records and groups but not ACLs, so this calls `rd_kafka_CreateAcls` (librdkafka
//! 2.12, linked in by rdkafka-sys) directly; every pointer is owned by a guard that frees
//! it, and the call blocks on a queue of its own until the answer (or the timeout).

use std::ffi::{CStr, CString, c_char};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::{Acl, Operation, PatternType, ResourceType};
use crate::KafkaSettings;

/// How long Kafka may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AclApplyError {
    #[error("cannot create an admin client for Kafka at {bootstrap}: {source}")]
    Client {
        bootstrap: String,
        source: KafkaError,
    },
    #[error("ACL {acl} cannot be sent: {reason}")]
    Invalid { acl: String, reason: String },
    #[error(
        "Kafka at {bootstrap} did not answer CreateAcls within {}s; check that it is reachable",
        TIMEOUT.as_secs()
    )]
    NoAnswer { bootstrap: String },
    #[error(
        "Kafka at {bootstrap} refused the ACLs: {reason} (the principal applying them needs \
         ALTER on the cluster, e.g. a super user)"
    )]
    Refused { bootstrap: String, reason: String },
    #[error(
        "Kafka at {bootstrap} refused {} of {total} ACLs, the first: {first}",
        refused.len()
    )]
    Partly {
        bootstrap: String,
        total: usize,
        refused: Vec<(String, String)>,
        first: String,
    },
}

/// Creates `acls` on Kafka (creating an ACL that exists is no change), as the principal of
/// `kafka`'s properties. Answers how many were sent.
pub async fn create_acls(kafka: &KafkaSettings, acls: &[Acl]) -> Result<usize, AclApplyError> {
    let kafka = kafka.clone();
    let acls = acls.to_vec();
    tokio::task::spawn_blocking(move || create_blocking(&kafka, &acls))
        .await
        .expect("creating ACLs does not panic")
}

fn create_blocking(kafka: &KafkaSettings, acls: &[Acl]) -> Result<usize, AclApplyError> {
    let bootstrap = kafka.bootstrap_servers.clone();
    if acls.is_empty() {
        return Ok(0);
    }
    let client: BaseProducer =
        kafka
            .client_config(&[])
            .create()
            .map_err(|source| AclApplyError::Client {
                bootstrap: bootstrap.clone(),
                source,
            })?;
    let rk = client.client().native_ptr();
    let mut bindings = Bindings(Vec::with_capacity(acls.len()));
    for acl in acls {
        bindings.0.push(binding(acl)?);
    }
    // SAFETY: `rk` lives as long as `client`, which outlives every call below; the queue,
    // options and event are freed by their guards before `client` is dropped.
    unsafe {
        let queue = Queue(rd::rd_kafka_queue_new(rk));
        let options = Options(rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEACLS,
        ));
        let mut errstr = [0 as c_char; 512];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options.0,
            TIMEOUT.as_millis() as i32,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        rd::rd_kafka_CreateAcls(
            rk,
            bindings.0.as_mut_ptr(),
            bindings.0.len(),
            options.0,
            queue.0,
        );
        // A little longer than the request's own timeout, which answers with an error event.
        let wait = (TIMEOUT + Duration::from_secs(5)).as_millis() as i32;
        let event = Event(rd::rd_kafka_queue_poll(queue.0, wait));
        if event.0.is_null() {
            return Err(AclApplyError::NoAnswer { bootstrap });
        }
        if rd::rd_kafka_event_error(event.0) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            return Err(AclApplyError::Refused {
                bootstrap,
                reason: text(rd::rd_kafka_event_error_string(event.0)),
            });
        }
        let result = rd::rd_kafka_event_CreateAcls_result(event.0);
        if result.is_null() {
            return Err(AclApplyError::Refused {
                bootstrap,
                reason: "the answer was not a CreateAcls result".to_owned(),
            });
        }
        let mut count = 0usize;
        let results = rd::rd_kafka_CreateAcls_result_acls(result, &mut count);
        let mut refused = Vec::new();
        for (i, acl) in acls.iter().enumerate().take(count) {
            let error = rd::rd_kafka_acl_result_error(*results.add(i));
            if error.is_null() {
                continue;
            }
            let code = rd::rd_kafka_error_code(error);
            if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                refused.push((acl.to_string(), reason(code, error)));
            }
        }
        match refused.first() {
            None => Ok(acls.len()),
            Some((_, reason)) if refused.len() == acls.len() => Err(AclApplyError::Refused {
                bootstrap,
                reason: reason.clone(),
            }),
            Some((acl, reason)) => Err(AclApplyError::Partly {
                bootstrap,
                total: acls.len(),
                first: format!("{acl}: {reason}"),
                refused,
            }),
        }
    }
}

/// A new `rd_kafka_AclBinding_t` for `acl`.
fn binding(acl: &Acl) -> Result<*mut rd::rd_kafka_AclBinding_t, AclApplyError> {
    let invalid = |reason: String| AclApplyError::Invalid {
        acl: acl.to_string(),
        reason,
    };
    let c = |s: &str| CString::new(s).map_err(|e| invalid(e.to_string()));
    let name = c(&acl.pattern.name)?;
    let principal = c(&acl.principal)?;
    let host = c("*")?;
    let restype = match acl.resource {
        ResourceType::Topic => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
        ResourceType::Group => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_GROUP,
    };
    let pattern = match acl.pattern.pattern {
        PatternType::Literal => {
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL
        }
        PatternType::Prefixed => {
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_PREFIXED
        }
    };
    let operation = match acl.operation {
        Operation::Read => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_READ,
        Operation::Write => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_WRITE,
        Operation::Create => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_CREATE,
        Operation::Describe => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_DESCRIBE,
    };
    let mut errstr = [0 as c_char; 512];
    // SAFETY: the strings outlive the call, which copies them; errstr is writable and sized.
    let binding = unsafe {
        rd::rd_kafka_AclBinding_new(
            restype,
            name.as_ptr(),
            pattern,
            principal.as_ptr(),
            host.as_ptr(),
            operation,
            rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
            errstr.as_mut_ptr(),
            errstr.len(),
        )
    };
    if binding.is_null() {
        // SAFETY: librdkafka wrote a NUL-terminated message into errstr.
        return Err(invalid(unsafe { text(errstr.as_ptr()) }));
    }
    Ok(binding)
}

/// The error's code, and Kafka's message when it is short: the broker's message for an
/// authorization failure is a dump of the request.
///
/// # Safety
/// `error` is a valid `rd_kafka_error_t`.
unsafe fn reason(code: rd::rd_kafka_resp_err_t, error: *const rd::rd_kafka_error_t) -> String {
    let code = RDKafkaErrorCode::from(code);
    // SAFETY: as the caller promised.
    let message = unsafe { text(rd::rd_kafka_error_string(error)) };
    if message.is_empty() || message.len() > 160 {
        code.to_string()
    } else {
        format!("{code}: {message}")
    }
}

/// # Safety
/// `s` is null or a NUL-terminated string.
unsafe fn text(s: *const c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: as the caller promised.
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}

struct Bindings(Vec<*mut rd::rd_kafka_AclBinding_t>);

impl Drop for Bindings {
    fn drop(&mut self) {
        for binding in self.0.drain(..) {
            // SAFETY: made by rd_kafka_AclBinding_new, freed once; CreateAcls copies them.
            unsafe { rd::rd_kafka_AclBinding_destroy(binding) };
        }
    }
}

struct Queue(*mut rd::rd_kafka_queue_t);

impl Drop for Queue {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: made by rd_kafka_queue_new, freed once.
            unsafe { rd::rd_kafka_queue_destroy(self.0) };
        }
    }
}

struct Options(*mut rd::rd_kafka_AdminOptions_t);

impl Drop for Options {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: made by rd_kafka_AdminOptions_new, freed once.
            unsafe { rd::rd_kafka_AdminOptions_destroy(self.0) };
        }
    }
}

struct Event(*mut rd::rd_kafka_event_t);

impl Drop for Event {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: returned by rd_kafka_queue_poll, freed once; the results read from it
            // are not used after this.
            unsafe { rd::rd_kafka_event_destroy(self.0) };
        }
    }
}
