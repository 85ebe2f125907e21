//! Who the caller is: the principal authentication ends in, and its
//! roles. What that principal may do is decided in [`super::access`].

use std::collections::BTreeSet;
use std::fmt;

/// What a caller may be allowed to do, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A member of staff booking for themselves.
    Employee,
    /// A service booking on behalf of staff.
    BookingAgent,
    /// Reads everything, changes nothing.
    Auditor,
    /// Runs the fleet: may do everything.
    FleetAdmin,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Employee,
        Role::BookingAgent,
        Role::Auditor,
        Role::FleetAdmin,
    ];

    /// The role's name in tokens, key files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Employee => "employee",
            Self::BookingAgent => "booking_agent",
            Self::Auditor => "auditor",
            Self::FleetAdmin => "fleet_admin",
        }
    }

    /// The role called `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// No authentication is configured: the loopback-only default.
    Anonymous,
    /// A JWT bearer token; the principal is an employee.
    Token,
    /// An API key of an internal service.
    ApiKey,
    /// A verified TLS client certificate of an internal service.
    Certificate,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Token => "token",
            Self::ApiKey => "api_key",
            Self::Certificate => "certificate",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The employee id (tokens), the key's name (API keys), the certificate's
    /// name (mTLS), or `anonymous`.
    pub id: String,
    pub kind: PrincipalKind,
    pub roles: BTreeSet<Role>,
}

/// A principal's roles, comma-separated.
#[derive(Debug, Clone, Copy)]
pub struct RoleList<'a>(&'a BTreeSet<Role>);

impl fmt::Display for RoleList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, role) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(role.as_str())?;
        }
        Ok(())
    }
}

impl Principal {
    /// The caller when no authentication is configured: may do everything.
    pub fn anonymous() -> Self {
        Self {
            id: "anonymous".to_owned(),
            kind: PrincipalKind::Anonymous,
            roles: BTreeSet::from([Role::FleetAdmin]),
        }
    }

    pub fn new(
        id: impl Into<String>,
        kind: PrincipalKind,
        roles: impl IntoIterator<Item = Role>,
    ) -> Self {
        Self {
            id: id.into(),
            kind,
            roles: roles.into_iter().collect(),
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The employee this caller is, if they are one: only token callers
    /// speak for an employee of their own.
    pub fn employee_id(&self) -> Option<&str> {
        (self.kind == PrincipalKind::Token).then_some(self.id.as_str())
    }

    /// The roles, comma-separated, for logs: written where it is displayed,
    /// with no string of its own, as the request line shows it on every call.
    pub fn roles_list(&self) -> RoleList<'_> {
        RoleList(&self.roles)
    }

    pub(super) fn any_of(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }

    /// Whether the caller acts as an employee: the role, held by someone
    /// who is one. An API key or certificate given `employee` speaks for
    /// nobody, so the role alone grants it nothing.
    pub(super) fn is_employee(&self) -> bool {
        self.has(Role::Employee) && self.employee_id().is_some()
    }

    pub(super) fn owns(&self, employee_id: &str) -> bool {
        self.is_employee() && self.employee_id() == Some(employee_id)
    }
}
