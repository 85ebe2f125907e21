//! Who the caller is and what they may do: a pure function of the caller,
//! the action and the facts of the resource it touches.
//!
//! Authentication (tokens, keys, certificates) happens at the edge and ends
//! in a [`Principal`]; every decision about that principal is made here, so
//! the gRPC handlers, and the REST gateway through them, share one matrix.

use std::collections::BTreeSet;
use std::fmt;

use super::error::DomainError;
use super::event::{EventFilter, EventKind};

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

    fn any_of(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }

    /// Whether the caller acts as an employee: the role, held by someone
    /// who is one. An API key or certificate given `employee` speaks for
    /// nobody, so the role alone grants it nothing.
    fn is_employee(&self) -> bool {
        self.has(Role::Employee) && self.employee_id().is_some()
    }

    fn owns(&self, employee_id: &str) -> bool {
        self.is_employee() && self.employee_id() == Some(employee_id)
    }
}

/// What a caller wants to do, with the facts that decide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Book for `employee_id`.
    CreateBooking { employee_id: &'a str },
    /// Read a booking held by `owner` (`None`: it does not exist).
    ReadBooking { owner: Option<&'a str> },
    /// Change a booking held by `owner` (`None`: it does not exist).
    ChangeBooking { owner: Option<&'a str> },
    /// Cancel a booking held by `owner` (`None`: it does not exist).
    CancelBooking { owner: Option<&'a str> },
    /// List the history, filtered to `employee_id` or not.
    ReadHistory { employee_id: Option<&'a str> },
    /// Read employees, vehicles and drivers (work contact data included).
    ReadDirectory,
    /// Read drivers' licence numbers.
    ReadLicences,
    /// Create or change employees, vehicles and drivers.
    ChangeFleet,
}

/// Why an action is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The caller may act on their own bookings only, and this one is not
    /// theirs (or does not exist: the answer is the same, so ids can't be
    /// probed).
    NotOwner,
    /// The action needs one of these roles, which the caller lacks.
    RoleRequired(&'static [Role]),
}

const WRITERS: &[Role] = &[Role::BookingAgent, Role::FleetAdmin];
const READERS: &[Role] = &[Role::BookingAgent, Role::Auditor, Role::FleetAdmin];
const ANY_ROLE: &[Role] = &[
    Role::Employee,
    Role::BookingAgent,
    Role::Auditor,
    Role::FleetAdmin,
];
const LICENCE_READERS: &[Role] = &[Role::Auditor, Role::FleetAdmin];
const FLEET_ADMINS: &[Role] = &[Role::FleetAdmin];

/// Whether `principal` may do `action`.
pub fn authorize(principal: &Principal, action: Action<'_>) -> Result<(), Denied> {
    // An employee acting on bookings that may not be theirs.
    let own = |owner: Option<&str>, others: &'static [Role]| {
        if principal.any_of(others) {
            Ok(())
        } else if principal.is_employee() {
            match owner {
                Some(owner) if principal.owns(owner) => Ok(()),
                _ => Err(Denied::NotOwner),
            }
        } else {
            Err(Denied::RoleRequired(roles_with_employee(others)))
        }
    };
    let one_of = |roles: &'static [Role]| {
        if principal.any_of(roles) {
            Ok(())
        } else {
            Err(Denied::RoleRequired(roles))
        }
    };
    match action {
        Action::CreateBooking { employee_id } => own(Some(employee_id), WRITERS),
        Action::ChangeBooking { owner } | Action::CancelBooking { owner } => own(owner, WRITERS),
        Action::ReadBooking { owner } => own(owner, READERS),
        Action::ReadHistory { employee_id } => match employee_id {
            Some(id) => own(Some(id), READERS),
            None if principal.any_of(READERS) => Ok(()),
            // An employee without a filter gets their own: see history_scope.
            None if principal.is_employee() => Ok(()),
            None => Err(Denied::RoleRequired(ANY_ROLE)),
        },
        Action::ReadDirectory => one_of(ANY_ROLE),
        Action::ReadLicences => one_of(LICENCE_READERS),
        Action::ChangeFleet => one_of(FLEET_ADMINS),
    }
}

/// The `employee_id` filter a history report runs with: what was asked, or,
/// for an employee who asked for no one in particular, themselves.
pub fn history_scope(
    principal: &Principal,
    requested: Option<String>,
) -> Result<Option<String>, Denied> {
    authorize(
        principal,
        Action::ReadHistory {
            employee_id: requested.as_deref(),
        },
    )?;
    Ok(match requested {
        None if !principal.any_of(READERS) => principal.employee_id().map(str::to_owned),
        requested => requested,
    })
}

const EVENT_READERS: &[Role] = &[Role::Auditor, Role::FleetAdmin];

/// The filter an event query or watch runs with: `requested`, narrowed to
/// what the caller may see. Auditors and fleet administrators see every
/// event; booking agents the events of bookings; an employee the events of
/// their own bookings. Asking for more than that is refused.
pub fn event_scope(principal: &Principal, requested: EventFilter) -> Result<EventFilter, Denied> {
    if principal.any_of(EVENT_READERS) {
        return Ok(requested);
    }
    let agent = principal.has(Role::BookingAgent);
    if !agent && !principal.is_employee() {
        return Err(Denied::RoleRequired(&[
            Role::Employee,
            Role::BookingAgent,
            Role::Auditor,
            Role::FleetAdmin,
        ]));
    }
    if requested.kinds.iter().any(|k| !k.is_booking()) {
        return Err(Denied::RoleRequired(EVENT_READERS));
    }
    let mut scoped = requested;
    if scoped.kinds.is_empty() {
        scoped.kinds = EventKind::ALL
            .into_iter()
            .filter(|k| k.is_booking())
            .collect();
    }
    if !agent {
        match scoped.employee_id.as_deref() {
            Some(id) if !principal.owns(id) => return Err(Denied::NotOwner),
            _ => scoped.employee_id = principal.employee_id().map(str::to_owned),
        }
    }
    Ok(scoped)
}

/// Whether `principal` may read every booking: a conflict then names the
/// booking in the way without a look at whose it is.
pub fn reads_every_booking(principal: &Principal) -> bool {
    principal.any_of(READERS)
}

/// A conflict as `principal` may see it: the booking in the way is named
/// only to a caller who may read it. `owner` holds that booking (`None`
/// when it could not be read). An employee learns that the vehicle is
/// taken, not the id of a colleague's booking.
pub fn shown_conflict(
    principal: &Principal,
    conflict: DomainError,
    owner: Option<&str>,
) -> DomainError {
    let named = conflict
        .conflicting_booking()
        .is_some_and(|id| !id.is_empty());
    if named && authorize(principal, Action::ReadBooking { owner }).is_err() {
        conflict.without_booking()
    } else {
        conflict
    }
}

/// The roles that may act on a booking: those that may act on any, plus
/// `employee` for their own.
fn roles_with_employee(others: &'static [Role]) -> &'static [Role] {
    if others == WRITERS {
        &[Role::Employee, Role::BookingAgent, Role::FleetAdmin]
    } else {
        ANY_ROLE
    }
}

impl Denied {
    /// The machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotOwner => "NOT_OWNER",
            Self::RoleRequired(_) => "ROLE_REQUIRED",
        }
    }

    /// The roles that would do, comma-separated (`metadata.roles`).
    pub fn roles_text(&self) -> String {
        match self {
            Self::NotOwner => String::new(),
            Self::RoleRequired(roles) => roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOwner => f.write_str(
                "the caller may act only on their own bookings, and this is not one of them",
            ),
            Self::RoleRequired(roles) if roles.len() == 1 => {
                write!(f, "this call needs the role {}", roles[0])
            }
            Self::RoleRequired(_) => {
                write!(f, "this call needs one of the roles {}", self.roles_text())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "emp-1";
    const OTHER: &str = "emp-2";

    fn caller(roles: &[Role]) -> Principal {
        Principal::new(ME, PrincipalKind::Token, roles.iter().copied())
    }

    /// Every cell of the role × action matrix, with the exact outcome.
    #[test]
    fn the_role_matrix() {
        use Action::*;
        use Role::*;
        let ok = Ok(());
        let not_owner = Err(Denied::NotOwner);
        let booking_roles = Err(Denied::RoleRequired(&[Employee, BookingAgent, FleetAdmin]));
        let admin_only = Err(Denied::RoleRequired(&[FleetAdmin]));
        let licence_roles = Err(Denied::RoleRequired(&[Auditor, FleetAdmin]));
        let any_role = Err(Denied::RoleRequired(ANY_ROLE));
        let actions: [(&str, Action<'_>); 17] = [
            ("create own", CreateBooking { employee_id: ME }),
            ("create other's", CreateBooking { employee_id: OTHER }),
            ("read own", ReadBooking { owner: Some(ME) }),
            ("read other's", ReadBooking { owner: Some(OTHER) }),
            ("read missing", ReadBooking { owner: None }),
            ("change own", ChangeBooking { owner: Some(ME) }),
            ("change other's", ChangeBooking { owner: Some(OTHER) }),
            ("change missing", ChangeBooking { owner: None }),
            ("cancel own", CancelBooking { owner: Some(ME) }),
            ("cancel other's", CancelBooking { owner: Some(OTHER) }),
            ("cancel missing", CancelBooking { owner: None }),
            (
                "history own",
                ReadHistory {
                    employee_id: Some(ME),
                },
            ),
            (
                "history other's",
                ReadHistory {
                    employee_id: Some(OTHER),
                },
            ),
            ("history all", ReadHistory { employee_id: None }),
            ("directory", ReadDirectory),
            ("licences", ReadLicences),
            ("fleet changes", ChangeFleet),
        ];
        // One row per role (and no role), one column per action above.
        type Row<'a> = (&'a [Role], [&'a Result<(), Denied>; 17]);
        let expected: [Row<'_>; 5] = [
            (
                &[Employee],
                [
                    &ok,
                    &not_owner,
                    &ok,
                    &not_owner,
                    &not_owner,
                    &ok,
                    &not_owner,
                    &not_owner,
                    &ok,
                    &not_owner,
                    &not_owner,
                    &ok,
                    &not_owner,
                    &ok,
                    &ok,
                    &licence_roles,
                    &admin_only,
                ],
            ),
            (
                &[BookingAgent],
                [
                    &ok,
                    &ok,
                    &ok,
                    &ok,
                    &ok,
                    &ok,
                    &ok,
                    &ok,
                    &ok,
                    &ok,
                    &ok,
                    &ok,
                    &ok,
                    &ok,
                    &ok,
                    &licence_roles,
                    &admin_only,
                ],
            ),
            (
                &[Auditor],
                [
                    &booking_roles,
                    &booking_roles,
                    &ok,
                    &ok,
                    &ok,
                    &booking_roles,
                    &booking_roles,
                    &booking_roles,
                    &booking_roles,
                    &booking_roles,
                    &booking_roles,
                    &ok,
                    &ok,
                    &ok,
                    &ok,
                    &ok,
                    &admin_only,
                ],
            ),
            (&[FleetAdmin], [&ok; 17]),
            (
                &[],
                [
                    &booking_roles,
                    &booking_roles,
                    &any_role,
                    &any_role,
                    &any_role,
                    &booking_roles,
                    &booking_roles,
                    &booking_roles,
                    &booking_roles,
                    &booking_roles,
                    &booking_roles,
                    &any_role,
                    &any_role,
                    &any_role,
                    &any_role,
                    &licence_roles,
                    &admin_only,
                ],
            ),
        ];
        for (roles, outcomes) in expected {
            let principal = caller(roles);
            for ((name, action), outcome) in actions.iter().zip(outcomes) {
                assert_eq!(
                    &authorize(&principal, *action),
                    outcome,
                    "{roles:?} may {name}?"
                );
            }
        }
    }

    #[test]
    fn an_auditor_who_is_also_an_employee_books_only_for_themselves() {
        let principal = caller(&[Role::Employee, Role::Auditor]);
        let other = Action::CreateBooking { employee_id: OTHER };
        assert_eq!(authorize(&principal, other), Err(Denied::NotOwner));
        let read = Action::ReadBooking { owner: Some(OTHER) };
        assert_eq!(authorize(&principal, read), Ok(()));
    }

    #[test]
    fn the_employee_role_grants_nothing_to_callers_who_are_not_employees() {
        // An API key or certificate given `employee` speaks for no one: it
        // may neither act on "its own" bookings nor list everyone's history.
        for kind in [PrincipalKind::ApiKey, PrincipalKind::Certificate] {
            let service = Principal::new(ME, kind, [Role::Employee]);
            let own = Action::ReadBooking { owner: Some(ME) };
            assert!(matches!(
                authorize(&service, own),
                Err(Denied::RoleRequired(_))
            ));
            assert!(matches!(
                history_scope(&service, None),
                Err(Denied::RoleRequired(_))
            ));
            let create = Action::CreateBooking { employee_id: ME };
            assert!(matches!(
                authorize(&service, create),
                Err(Denied::RoleRequired(_))
            ));
        }
    }

    #[test]
    fn an_employee_without_a_filter_gets_their_own_history() {
        let employee = caller(&[Role::Employee]);
        assert_eq!(history_scope(&employee, None), Ok(Some(ME.to_owned())));
        assert_eq!(
            history_scope(&employee, Some(ME.to_owned())),
            Ok(Some(ME.to_owned()))
        );
        assert_eq!(
            history_scope(&employee, Some(OTHER.to_owned())),
            Err(Denied::NotOwner)
        );
        let auditor = caller(&[Role::Auditor]);
        assert_eq!(history_scope(&auditor, None), Ok(None));
        assert_eq!(
            history_scope(&Principal::anonymous(), None),
            Ok(None),
            "the anonymous loopback caller is a fleet admin"
        );
    }

    #[test]
    fn roles_parse_from_their_names_only() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("Employee"), None);
        assert_eq!(Role::parse("admin"), None);
    }

    #[test]
    fn roles_are_listed_comma_separated_in_a_fixed_order() {
        let list = |roles: &[Role]| caller(roles).roles_list().to_string();
        assert_eq!(list(&[]), "");
        assert_eq!(list(&[Role::Auditor]), "auditor");
        assert_eq!(
            list(&[Role::FleetAdmin, Role::Employee, Role::Auditor]),
            "employee,auditor,fleet_admin"
        );
    }

    #[test]
    fn refusals_name_the_roles_that_would_do() {
        let denied = authorize(&caller(&[Role::Employee]), Action::ChangeFleet).unwrap_err();
        assert_eq!(denied.reason(), "ROLE_REQUIRED");
        assert_eq!(denied.roles_text(), "fleet_admin");
        assert_eq!(denied.to_string(), "this call needs the role fleet_admin");
    }

    #[test]
    fn who_sees_which_events() {
        use Role::*;
        let booking_kinds = vec![
            EventKind::AllocationCreated,
            EventKind::AllocationUpdated,
            EventKind::AllocationCancelled,
        ];
        let any = EventFilter::default();
        let of = |id: &str| EventFilter {
            employee_id: Some(id.into()),
            ..EventFilter::default()
        };
        let fleet_kind = EventFilter {
            kinds: vec![EventKind::VehicleUpdated],
            ..EventFilter::default()
        };
        for role in [Auditor, FleetAdmin] {
            assert_eq!(event_scope(&caller(&[role]), any.clone()), Ok(any.clone()));
            assert_eq!(
                event_scope(&caller(&[role]), fleet_kind.clone()),
                Ok(fleet_kind.clone())
            );
        }
        let agent = caller(&[BookingAgent]);
        assert_eq!(
            event_scope(&agent, of(OTHER)),
            Ok(EventFilter {
                kinds: booking_kinds.clone(),
                ..of(OTHER)
            })
        );
        let admins = Err(Denied::RoleRequired(&[Auditor, FleetAdmin]));
        assert_eq!(event_scope(&agent, fleet_kind.clone()), admins);
        // An employee sees their own bookings' events, whatever they ask.
        let me = caller(&[Employee]);
        let mine = Ok(EventFilter {
            kinds: booking_kinds,
            ..of(ME)
        });
        assert_eq!(event_scope(&me, any.clone()), mine);
        assert_eq!(event_scope(&me, of(ME)), mine);
        assert_eq!(event_scope(&me, of(OTHER)), Err(Denied::NotOwner));
        assert_eq!(event_scope(&me, fleet_kind), admins);
        // An API key given `employee` speaks for nobody.
        let key = Principal::new("svc", PrincipalKind::ApiKey, [Employee]);
        assert!(matches!(
            event_scope(&key, any),
            Err(Denied::RoleRequired(_))
        ));
    }

    #[test]
    fn a_conflict_names_the_booking_in_the_way_to_who_may_read_it() {
        use Role::*;
        let conflict = DomainError::VehicleAlreadyBooked {
            vehicle_id: "veh-1".into(),
            date: chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            allocation_id: "a-9".into(),
        };
        let shown = |roles: &[Role], owner: Option<&str>| {
            shown_conflict(&caller(roles), conflict.clone(), owner)
                .conflicting_booking()
                .map(str::to_owned)
        };
        let named = Some("a-9".to_owned());
        let withheld = Some(String::new());
        assert_eq!(shown(&[Employee], Some(ME)), named);
        assert_eq!(shown(&[Employee], Some(OTHER)), withheld);
        assert_eq!(shown(&[Employee], None), withheld);
        assert_eq!(shown(&[BookingAgent], Some(OTHER)), named);
        assert_eq!(shown(&[FleetAdmin], None), named);
        assert!(reads_every_booking(&caller(&[Auditor])));
        assert!(!reads_every_booking(&caller(&[Employee])));
    }
}
