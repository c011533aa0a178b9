//! What a caller may do: [`Permission`]s, the [`Role`]s that bundle them, and [`Grant`], a
//! role or a single permission as written in configuration and on credentials.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One thing a caller may be allowed to do. Everything not granted is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Publish events (through the gateway), limited by the credential's topic allow-list.
    Publish,
    /// Report what a consumer did with an event.
    ReportOutcome,
    /// Read traces, transaction listings and subjects' histories (payloads masked).
    TraceRead,
    /// See payloads unmasked.
    PayloadRead,
    /// Export transactions (CSV, JSON).
    Export,
    /// Replay one transaction.
    Replay,
    /// Bulk replays above the configured size.
    BulkReplay,
    /// Redrive dead-lettered jobs.
    Redrive,
    /// Read and verify the audit trail.
    AuditRead,
    /// Erase a subject's payloads.
    Erase,
    /// Create, list and revoke API tokens.
    TokenAdmin,
    /// Change configuration; see protected metrics.
    ConfigAdmin,
    /// Write a backup of the archive to a directory on its host.
    Backup,
    /// Read a service's effective configuration (`GET /v1/config`, secrets redacted).
    ConfigRead,
}

impl Permission {
    /// Every permission, in declaration order.
    pub const ALL: [Permission; 14] = [
        Permission::Publish,
        Permission::ReportOutcome,
        Permission::TraceRead,
        Permission::PayloadRead,
        Permission::Export,
        Permission::Replay,
        Permission::BulkReplay,
        Permission::Redrive,
        Permission::AuditRead,
        Permission::Erase,
        Permission::TokenAdmin,
        Permission::ConfigAdmin,
        Permission::Backup,
        Permission::ConfigRead,
    ];

    /// The permission's name in configuration, on credentials and in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Publish => "publish",
            Permission::ReportOutcome => "outcome:report",
            Permission::TraceRead => "trace:read",
            Permission::PayloadRead => "payload:read",
            Permission::Export => "export",
            Permission::Replay => "replay",
            Permission::BulkReplay => "replay:bulk",
            Permission::Redrive => "redrive",
            Permission::AuditRead => "audit:read",
            Permission::Erase => "erase",
            Permission::TokenAdmin => "token:admin",
            Permission::ConfigAdmin => "config:admin",
            Permission::Backup => "backup",
            Permission::ConfigRead => "config:read",
        }
    }
}

/// A bundle of permissions given to a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Publish to its topic allow-list; report outcomes. Services and scripts.
    Publisher,
    /// Trace, search, export; payloads masked unless also granted `payload:read`.
    Analyst,
    /// Trace, search, see payloads, replay, redrive.
    Support,
    /// Everything, tokens and configuration included.
    Admin,
}

impl Role {
    /// Every role, lowest first: when a person holds several, the highest wins.
    pub const ALL: [Role; 4] = [Role::Publisher, Role::Analyst, Role::Support, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Analyst => "analyst",
            Role::Support => "support",
            Role::Admin => "admin",
        }
    }

    /// Whether this role alone grants `permission`.
    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Publisher => matches!(permission, Publish | ReportOutcome),
            Role::Support => matches!(permission, TraceRead | PayloadRead | Replay | Redrive),
            Role::Analyst => matches!(permission, TraceRead | Export),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error(
        "role {0:?} is not known: use `publisher`, `support`, `analyst` or `admin` (lower case)"
    )]
    UnknownRole(String),
    #[error(
        "permission {0:?} is not known: use one of publish, outcome:report, trace:read, \
         payload:read, export, replay, replay:bulk, redrive, audit:read, erase, token:admin, \
         config:admin, backup, config:read"
    )]
    UnknownPermission(String),
    #[error(
        "{0:?} is neither a role (publisher, support, analyst, admin) nor a permission \
         (e.g. payload:read)"
    )]
    Unknown(String),
}

impl FromStr for Role {
    type Err = GrantError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| GrantError::UnknownRole(text.to_owned()))
    }
}

impl FromStr for Permission {
    type Err = GrantError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|permission| permission.as_str() == text)
            .ok_or_else(|| GrantError::UnknownPermission(text.to_owned()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a name in a role mapping means: a whole role, or one extra permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Role(Role),
    Permission(Permission),
}

impl FromStr for Grant {
    type Err = GrantError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(role) = text.parse() {
            return Ok(Grant::Role(role));
        }
        if let Ok(permission) = text.parse() {
            return Ok(Grant::Permission(permission));
        }
        Err(GrantError::Unknown(text.to_owned()))
    }
}

macro_rules! serde_as_str {
    ($type:ty) => {
        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_str!(Role);
serde_as_str!(Permission);

#[cfg(test)]
mod tests {
    use super::*;

    /// The role matrix, written out: one row per permission, one column per role
    /// (publisher, analyst, support, admin).
    const MATRIX: [(Permission, [bool; 4]); 14] = [
        (Permission::Publish, [true, false, false, true]),
        (Permission::ReportOutcome, [true, false, false, true]),
        (Permission::TraceRead, [false, true, true, true]),
        (Permission::PayloadRead, [false, false, true, true]),
        (Permission::Export, [false, true, false, true]),
        (Permission::Replay, [false, false, true, true]),
        (Permission::BulkReplay, [false, false, false, true]),
        (Permission::Redrive, [false, false, true, true]),
        (Permission::AuditRead, [false, false, false, true]),
        (Permission::Erase, [false, false, false, true]),
        (Permission::TokenAdmin, [false, false, false, true]),
        (Permission::ConfigAdmin, [false, false, false, true]),
        (Permission::ConfigRead, [false, false, false, true]),
        (Permission::Backup, [false, false, false, true]),
    ];

    #[test]
    fn every_role_grants_exactly_its_row_of_the_matrix() {
        assert_eq!(MATRIX.len(), Permission::ALL.len());
        for (permission, row) in MATRIX {
            for (role, expected) in Role::ALL.into_iter().zip(row) {
                assert_eq!(
                    role.grants(permission),
                    expected,
                    "{role} × {permission} should be {expected}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert_eq!(role.as_str().parse::<Grant>().unwrap(), Grant::Role(role));
        }
        for permission in Permission::ALL {
            assert_eq!(
                permission.as_str().parse::<Permission>().unwrap(),
                permission
            );
            assert_eq!(
                permission.as_str().parse::<Grant>().unwrap(),
                Grant::Permission(permission)
            );
        }
        let json = serde_json::to_string(&(Role::Support, Permission::PayloadRead)).unwrap();
        assert_eq!(json, r#"["support","payload:read"]"#);
    }

    #[test]
    fn parsing_errors_name_the_bad_value() {
        let error = "Admin".parse::<Role>().unwrap_err();
        assert!(error.to_string().contains("\"Admin\""), "{error}");
        let error = "payload:write".parse::<Permission>().unwrap_err();
        assert!(error.to_string().contains("\"payload:write\""), "{error}");
        let error = "superuser".parse::<Grant>().unwrap_err();
        assert!(error.to_string().contains("\"superuser\""), "{error}");
        let error = serde_json::from_str::<Role>(r#""root""#).unwrap_err();
        assert!(error.to_string().contains("\"root\""), "{error}");
    }
}
