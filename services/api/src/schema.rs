//! Schemas the derive cannot say by itself, for the OpenAPI document: text fields whose
//! values are one of a fixed set (kept as `String` in Rust so a newer server's value still
//! reads), and a [`Page`] whose items refer to their own schema (the derive would copy the
//! item's schema into each page's, and name the page after its item's Rust type).

use utoipa::openapi::schema::{
    Array, ArrayBuilder, Object, ObjectBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::{Behind, Page};

impl<T: ToSchema> PartialSchema for Page<T> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "A page of a listing; pass `next_cursor` as `cursor` to get the next one.",
            ))
            .property(
                "items",
                ArrayBuilder::new().items(Ref::from_schema_name(T::name())),
            )
            .required("items")
            .property(
                "next_cursor",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .description(Some("Null on the last page.")),
            )
            .required("next_cursor")
            .property(
                "behind",
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(Behind::name()))
                    .description(Some(
                        "Partitions the archive is behind on: the listing may miss what they \
                         hold. Absent when it keeps up.",
                    )),
            )
            .into()
    }
}

/// A page's schema is named after its items (`TransactionPage`): see the OpenAPI document's
/// components.
impl<T: ToSchema> ToSchema for Page<T> {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
        schemas.push((Behind::name().into_owned(), Behind::schema()));
    }
}

/// A string that is one of `values`, described by `description`.
fn one_of(values: &[&str], description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .build()
}

pub(crate) fn message_kind() -> Object {
    one_of(
        &[
            "envelope",
            "headers_only",
            "outcome",
            "untraceable",
            "malformed",
            "audit",
            "change",
        ],
        "What the archive found: `envelope`; `headers_only`, traced from its `retrace-*` \
         headers, its value (JSON, text, anything) not an envelope; `outcome`; `untraceable`; \
         `malformed`; `audit` (a record of the audit topic); `change` (a record of the \
         archive's change log: a replay or an erasure every replica applies).",
    )
}

pub(crate) fn outcome_status() -> Object {
    one_of(
        &[
            "processed",
            "failed",
            "retrying",
            "dead_lettered",
            "skipped",
            "unspecified",
        ],
        "What the consumer did with the event (`unspecified`: the outcome did not say).",
    )
}

pub(crate) fn replay_state() -> Object {
    one_of(
        &["running", "done", "failed", "unspecified"],
        "`running`, `done` or `failed` (`error` says why, `published` how far it got).",
    )
}

pub(crate) fn role() -> Object {
    one_of(
        &["publisher", "analyst", "support", "admin"],
        "The role: `publisher`, `analyst`, `support` or `admin`.",
    )
}

pub(crate) fn permissions() -> Array {
    ArrayBuilder::new()
        .items(one_of(
            &[
                "publish",
                "outcome:report",
                "trace:read",
                "payload:read",
                "export",
                "replay",
                "replay:bulk",
                "redrive",
                "audit:read",
                "erase",
                "token:admin",
                "config:admin",
                "backup",
                "config:read",
            ],
            "A permission.",
        ))
        .description(Some("Permissions beyond the role, e.g. `payload:read`."))
        .build()
}

pub(crate) fn topics() -> Array {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z0-9._-]{1,249}$"))
                .description(Some("A Kafka topic name.")),
        )
        .description(Some(
            "Topics a publisher may publish to; absent or null means any.",
        ))
        .build()
}
