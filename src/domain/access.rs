//! What a caller may do: a pure function of the caller,
//! the action and the facts of the resource it touches.
//!
//! Authentication (tokens, keys, certificates) happens at the edge and ends
//! in a [`Principal`]; every decision about that principal is made here, so
//! the gRPC handlers, and the REST gateway through them, share one matrix.

pub use super::error::Denied;
use super::error::DomainError;
use super::event::{EventFilter, EventKind};
pub use super::principal::{Principal, PrincipalKind, Role, RoleList};

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
